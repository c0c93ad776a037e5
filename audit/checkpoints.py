"""Signed checkpoints of the audit chains, and where they are written: pure, no Django.

The chain (audit.chain) shows any change that was not followed by recomputing every later
hash; whoever controls the database can recompute them. A checkpoint says "tenant T's chain
had N entries and entry N's hash was H at time t", signed with a key that is not in the
database, and is written outside it (a file on an append-only or other host, an S3 object
under object lock, an e-mail to legal reviewers). Rewriting history before a checkpoint, or
cutting the chain below one, then no longer goes unseen.

Ed25519 rather than an HMAC: verifying needs only the public key, so legal reviewers, a
monitoring host, anyone who reads the sink or the e-mails can check checkpoints without
being able to make one. The private key is derived (HKDF-SHA256, its own salt and info) from
LIKENESS_AUDIT_ANCHOR_KEY, or by default from LIKENESS_MASTER_KEY; neither is ever stored in
the database.

Format: one JSON object per line, `{"checkpoint": BODY, "signature": SIG}`, where BODY is a
string holding the canonical JSON of the checkpoint (sorted keys, no spaces) and SIG the
base64 Ed25519 signature of BODY's UTF-8 bytes. Keeping BODY as a string means a verifier in
any language checks the exact bytes that were signed, with no canonicalisation of its own.
A checkpoint names the one before it (`previous`, the SHA-256 of its BODY) and is numbered
per tenant, so a checkpoint missing from a sink shows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CHECKPOINT_TYPE = "likeness.audit.checkpoint"
CHECKPOINT_VERSION = 1
PUBLIC_KEY_PREFIX = "ed25519:"
# A checkpoint line is about 450 characters; anything far longer is not one of ours.
MAX_LINE_CHARS = 4096
MAX_SINK_CHARS = 500
_SIGNING_SALT = b"likeness/audit-anchor/v1"
_SIGNING_INFO = b"ed25519 signing key for audit checkpoints"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_EMAIL = re.compile(r"^[^@\s;,]+@[^@\s;,]+\.[^@\s;,]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_FIELDS = {"type", "v", "tenant_id", "tenant_slug", "number", "seq", "head_hash", "at", "previous", "key_id"}


class CheckpointError(ValueError):
    """A line that is not a valid checkpoint signed by a trusted key; `tenant_id` when it names one."""

    def __init__(self, reason: str, tenant_id: int | None = None) -> None:
        super().__init__(reason)
        self.tenant_id = tenant_id


# --- keys -----------------------------------------------------------------------------------


def signing_key(secret: str) -> Ed25519PrivateKey:
    """The Ed25519 key derived from a deployment secret (the same secret always gives the same key)."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SIGNING_SALT, info=_SIGNING_INFO).derive(
        secret.encode()
    )
    return Ed25519PrivateKey.from_private_bytes(seed)


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_text(public: Ed25519PublicKey) -> str:
    """`ed25519:<base64 of the 32 raw bytes>`: one line, fit for an environment variable or an e-mail."""
    return PUBLIC_KEY_PREFIX + base64.b64encode(_raw(public)).decode("ascii")


def load_public_key(text: str) -> Ed25519PublicKey:
    if not text.startswith(PUBLIC_KEY_PREFIX):
        raise ValueError(f"a public key is written {PUBLIC_KEY_PREFIX}<base64>, got {text[:20]!r}")
    try:
        raw = base64.b64decode(text.removeprefix(PUBLIC_KEY_PREFIX), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ValueError(f"{text[:20]!r}... is not a base64 Ed25519 public key (32 bytes)") from None


def key_id(public: Ed25519PublicKey) -> str:
    """Short fingerprint of a public key, named in every checkpoint so a verifier picks the right key."""
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


# --- checkpoints ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    tenant_id: int
    tenant_slug: str
    number: int
    seq: int
    head_hash: str
    at: str
    previous: str | None
    key_id: str
    body: str
    signature: str

    @property
    def digest(self) -> str:
        return body_digest(self.body)

    @property
    def line(self) -> str:
        return json.dumps({"checkpoint": self.body, "signature": self.signature}, sort_keys=True)

    def describe(self) -> str:
        return f"checkpoint #{self.number} of {self.at}"


def body_digest(body: str) -> str:
    """What the next checkpoint of the tenant names as `previous`: SHA-256 of the signed body."""
    return hashlib.sha256(body.encode()).hexdigest()


def _canonical(fields: Mapping[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sign_checkpoint(
    key: Ed25519PrivateKey,
    *,
    tenant_id: int,
    tenant_slug: str,
    number: int,
    seq: int,
    head_hash: str,
    at: str,
    previous: str | None,
) -> Checkpoint:
    fields = {
        "type": CHECKPOINT_TYPE,
        "v": CHECKPOINT_VERSION,
        "tenant_id": tenant_id,
        "tenant_slug": tenant_slug,
        "number": number,
        "seq": seq,
        "head_hash": head_hash,
        "at": at,
        "previous": previous,
        "key_id": key_id(key.public_key()),
    }
    body = _canonical(fields)
    signature = base64.b64encode(key.sign(body.encode())).decode("ascii")
    return _checkpoint(fields, body, signature)


def _checkpoint(fields: Mapping[str, Any], body: str, signature: str) -> Checkpoint:
    return Checkpoint(
        tenant_id=fields["tenant_id"],
        tenant_slug=fields["tenant_slug"],
        number=fields["number"],
        seq=fields["seq"],
        head_hash=fields["head_hash"],
        at=fields["at"],
        previous=fields["previous"],
        key_id=fields["key_id"],
        body=body,
        signature=signature,
    )


def _field_problem(fields: dict[str, Any]) -> str | None:
    if set(fields) != _FIELDS or fields["type"] != CHECKPOINT_TYPE or fields["v"] != CHECKPOINT_VERSION:
        return "not a version-1 checkpoint"
    numbers = ("tenant_id", "number", "seq")
    if not all(isinstance(fields[name], int) and fields[name] >= 1 for name in numbers):
        return "tenant_id, number and seq must be positive integers"
    if not _HEX64.match(str(fields["head_hash"])):
        return "head_hash is not a SHA-256 hex digest"
    if fields["previous"] is not None and not _HEX64.match(str(fields["previous"])):
        return "previous is not a SHA-256 hex digest"
    if not all(isinstance(fields[name], str) for name in ("tenant_slug", "at", "key_id")):
        return "tenant_slug, at and key_id must be strings"
    return None


def open_line(text: str, trusted: Mapping[str, Ed25519PublicKey]) -> Checkpoint:
    """The checkpoint a sink line holds, once its signature verifies with a trusted key.

    Raises CheckpointError saying what is wrong, with the tenant id when the body names one
    (a bad line about a tenant makes that tenant's verification fail, never pass).
    """
    if len(text) > MAX_LINE_CHARS:
        raise CheckpointError(f"longer than {MAX_LINE_CHARS} characters: not a checkpoint")
    try:
        outer = json.loads(text)
        body, signature = outer["checkpoint"], outer["signature"]
        fields = json.loads(body)
    except (ValueError, TypeError, KeyError):
        raise CheckpointError("not a checkpoint line (unreadable JSON)") from None
    if not isinstance(fields, dict) or not isinstance(signature, str):
        raise CheckpointError("not a checkpoint line")
    tenant_id = fields.get("tenant_id") if isinstance(fields.get("tenant_id"), int) else None
    problem = _field_problem(fields)
    if problem:
        raise CheckpointError(problem, tenant_id)
    public = trusted.get(fields["key_id"])
    if public is None:
        raise CheckpointError(
            f"signed by key {fields['key_id']}, which is not trusted here (if it is a retired anchor key, "
            "add its public key to LIKENESS_AUDIT_ANCHOR_TRUSTED_KEYS)",
            tenant_id,
        )
    try:
        public.verify(base64.b64decode(signature, validate=True), body.encode())
    except (InvalidSignature, binascii.Error, ValueError):
        raise CheckpointError("its signature does not verify (altered or forged)", tenant_id) from None
    return _checkpoint(fields, body, signature)


# --- sinks ----------------------------------------------------------------------------------

SinkKind = Literal["file", "s3", "email"]


@dataclass(frozen=True)
class SinkSpec:
    """One entry of LIKENESS_AUDIT_ANCHOR_SINKS, parsed; `name` is the entry as configured."""

    kind: SinkKind
    name: str
    path: Path | None = None
    bucket: str = ""
    prefix: str = ""
    addresses: tuple[str, ...] = ()

    @property
    def readable(self) -> bool:
        """Whether verification can read checkpoints back from it (an e-mail cannot be)."""
        return self.kind in ("file", "s3")


def _parse_sink(spec: str) -> SinkSpec:
    if len(spec) > MAX_SINK_CHARS:
        raise ValueError(f"an audit anchor sink is at most {MAX_SINK_CHARS} characters")
    if spec.startswith("file:"):
        path = Path(spec.removeprefix("file:"))
        if not path.is_absolute():
            raise ValueError(f"audit anchor sink {spec!r}: a file sink needs an absolute path")
        return SinkSpec("file", spec, path=path)
    if spec.startswith("s3://"):
        bucket, _, prefix = spec.removeprefix("s3://").partition("/")
        if not _BUCKET.match(bucket):
            raise ValueError(f"audit anchor sink {spec!r}: write s3://bucket/prefix with a valid bucket name")
        return SinkSpec("s3", spec, bucket=bucket, prefix=prefix.strip("/") or "audit-anchors")
    if spec.startswith("email:"):
        addresses = tuple(part.strip() for part in spec.removeprefix("email:").split(";") if part.strip())
        bad = [address for address in addresses if not _EMAIL.match(address)]
        if not addresses or bad:
            raise ValueError(
                f"audit anchor sink {spec!r}: write email:ADDRESS[;ADDRESS...] with valid addresses"
            )
        return SinkSpec("email", spec, addresses=addresses)
    raise ValueError(
        f"audit anchor sink {spec!r} is not file:/absolute/path, s3://bucket/prefix or email:addresses"
    )


def parse_sinks(specs: Iterable[str]) -> list[SinkSpec]:
    """Parse and check the configured sinks; verification needs at least one it can read back."""
    sinks = [_parse_sink(spec) for spec in specs]
    if not any(sink.readable for sink in sinks):
        raise ValueError(
            "LIKENESS_AUDIT_ANCHOR_SINKS needs a file: or s3:// sink: verification reads checkpoints "
            "back from the first one (e-mail is write-only)"
        )
    if len({sink.name for sink in sinks}) != len(sinks):
        raise ValueError("LIKENESS_AUDIT_ANCHOR_SINKS names a sink twice")
    return sinks
