"""The hash chain: canonical serialization of an entry and its digest.

Pure functions, shared by the writer (audit.actions.record) and the verifier,
so both always agree on what exactly is hashed.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import json.encoder
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

GENESIS_HASH = "0" * 64
MAX_PAYLOAD_BYTES = 16 * 1024
# A list of more floats than this is treated as a feature vector (face embedding, latent):
# biometric data never goes into the audit log.
MAX_FLOATS_PER_LIST = 16


class AuditPayloadError(ValueError):
    """The payload holds something other than IDs and facts."""


def _normalize(value: Any, path: str) -> Any:
    if isinstance(value, enum.Enum):
        return _normalize(value.value, path)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AuditPayloadError(f"payload{path} is not a finite number.")
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        raise AuditPayloadError(f"payload{path} holds raw bytes: audit entries hold IDs and facts only.")
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditPayloadError(f"payload{path} has a non-string key {key!r}.")
            out[key] = _normalize(item, f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        if sum(isinstance(item, float) for item in value) > MAX_FLOATS_PER_LIST:
            raise AuditPayloadError(
                f"payload{path} looks like a feature vector: biometric data never goes into the audit log."
            )
        return [_normalize(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise AuditPayloadError(f"payload{path} has unsupported type {type(value).__name__}.")


# What json.dumps(value, **these options) builds on every call, built once: the chain walk encodes
# every entry, and making the encoder cost a fifth of encoding one.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# JSONEncoder.encode still builds its C encoder on every call (about 40% of an entry's encoding):
# CPython's own one-shot encoder, made once with the same options, writes the same text. No
# circular-reference markers: payloads are normalised JSON trees (normalize_payload), never cyclic.
# Where the C accelerator is missing (another Python), the plain encoder is used.
_MAKE_C_ENCODER: Callable[..., Any] | None = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODER = (
    _MAKE_C_ENCODER(
        None,  # no circular-reference markers
        _CANONICAL.default,
        json.encoder.encode_basestring,  # ensure_ascii=False
        None,  # no indent
        ":",
        ",",
        True,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )
    if _MAKE_C_ENCODER is not None
    else None
)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text: the same bytes on every database and Python."""
    if _C_ENCODER is None:
        return _CANONICAL.encode(value)
    return "".join(_C_ENCODER(value, 0))


def normalize_payload(payload: dict[str, Any] | None) -> dict[str, Any]:
    """Validate and convert a payload to plain JSON types; raise AuditPayloadError otherwise."""
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise AuditPayloadError("payload must be a dict.")
    normalized: dict[str, Any] = _normalize(payload, "")
    if len(canonical_json(normalized).encode()) > MAX_PAYLOAD_BYTES:
        raise AuditPayloadError(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes: store IDs, not content.")
    return normalized


def format_timestamp(at: dt.datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware.")
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# format_timestamp's text, as PostgreSQL's to_char() makes it from a stored timestamptz taken at UTC.
# The chain walk has the database format every entry's time: parsing and formatting 100,000
# timestamps in Python cost a third of verify_audit. tests/platform/test_audit_chain.py pins the two
# equal (microseconds of zero, leap days, the four-digit years timezone.now() gives).
TIMESTAMP_TO_CHAR = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


SUBJECT_TARGET_TYPE = "consent.subject"


def canonical_entry(
    *,
    tenant_id: int,
    seq: int,
    at: dt.datetime | str,
    actor_id: int | None,
    action: str,
    target_type: str,
    target_id: str,
    payload: dict[str, Any],
) -> str:
    """What an entry's hash covers; `at` is the moment, or the text format_timestamp made of it.

    canonical_json of {"tenant", "seq", "at", "actor", "action", "target_type", "target_id",
    "payload"}, with the fixed envelope written directly (keys already in sorted order) and only
    the payload encoded as a tree: the chain walk makes one per entry (a fifth of verify_audit).
    tests/platform/test_audit_chain.py pins the text equal to canonical_json of the dict.
    """
    return _ENTRY_ENVELOPE % (
        _string(action),
        "null" if actor_id is None else int(actor_id),
        _string(at if isinstance(at, str) else format_timestamp(at)),
        canonical_json(payload),
        int(seq),
        _string(target_id),
        _string(target_type),
        int(tenant_id),
    )


_ENTRY_ENVELOPE = (
    '{"action":%s,"actor":%s,"at":%s,"payload":%s,"seq":%d,"target_id":%s,"target_type":%s,"tenant":%d}'
)
# A JSON string as the canonical encoder writes it (ensure_ascii=False): the same C function.
_string = json.encoder.encode_basestring


def subject_reference(target_type: str, target_id: str, payload: dict[str, Any]) -> int | None:
    """The subject an entry is about: its target when that is a subject, else the facts' `subject_id`.

    Stored beside the entry as an indexed column (the ledger and the audit log's subject
    filter are queries, not scans of the facts). It is derived from hashed content rather
    than hashed itself, so entries written before the column existed keep their hashes, and
    the chain walk re-derives it: an edited reference shows as a broken entry. Only a JSON
    number counts, as the actions write it; anything else names no subject.
    """
    if target_type == SUBJECT_TARGET_TYPE:
        return int(target_id) if target_id.isascii() and target_id.isdigit() else None
    value = payload.get("subject_id")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def chain_hash(prev_hash: str, canonical: str) -> str:
    """sha256(prev_hash || canonical entry), hex."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical.encode("utf-8")).hexdigest()
