"""Anchoring the audit chains outside the database: make checkpoints, deliver them, read them back.

`anchor_chains()` (the beat task `audit.anchor_chains` every LIKENESS_AUDIT_ANCHOR_MINUTES, and
`manage.py anchor_audit`) signs a checkpoint for every tenant whose chain grew since its last
one, only after checking that the new entries extend that checkpoint, then delivers every
checkpoint a configured sink does not have yet. Checkpoints wait in the database (an outbox)
until each sink has taken them, so a sink that is down loses nothing: it is retried on the
next run, in order. Runs are idempotent: a second run with nothing new writes nothing.

`read_evidence()` reads the checkpoints back from the first readable sink (file or S3) for
audit.verification. Failures are logged with the sink and the kind of error, never a key.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.chain import GENESIS_HASH, format_timestamp
from audit.checkpoints import (
    MAX_LINE_CHARS,
    Checkpoint,
    CheckpointError,
    SinkSpec,
    body_digest,
    key_id,
    load_public_key,
    open_line,
    parse_sinks,
    public_key_text,
    sign_checkpoint,
    signing_key,
)
from audit.models import AuditCheckpoint, AuditCheckpointDelivery, AuditEntry
from audit.walk import problem_since
from tenancy.models import Tenant

logger = logging.getLogger(__name__)

# Bounded work per run and sink; what is left goes out on the next run.
MAX_DELIVERIES_PER_RUN = 2000
CHECKPOINTS_PER_EMAIL = 100


# --- keys -----------------------------------------------------------------------------------


def _anchor_secret() -> str:
    return settings.LIKENESS_AUDIT_ANCHOR_KEY or settings.LIKENESS_MASTER_KEY


def current_signing_key() -> Ed25519PrivateKey:
    return signing_key(_anchor_secret())


def trusted_keys() -> dict[str, Ed25519PublicKey]:
    """Public keys whose checkpoints verify: the current one, retired ones, and during a master-key
    rotation the keys derived from the previous master keys (when the anchor key follows the master)."""
    publics = [current_signing_key().public_key()]
    publics += [load_public_key(text) for text in settings.LIKENESS_AUDIT_ANCHOR_TRUSTED_KEYS]
    if not settings.LIKENESS_AUDIT_ANCHOR_KEY:
        publics += [signing_key(previous).public_key() for previous in settings.LIKENESS_PREVIOUS_MASTER_KEYS]
    return {key_id(public): public for public in publics}


def current_public_key_text() -> str:
    return public_key_text(current_signing_key().public_key())


# --- sinks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SinkLine:
    where: str  # a place a reviewer can find again: "line 17", "object tenant-5/000...json"
    text: str


def _sink_errors() -> tuple[type[Exception], ...]:
    """What a sink raises when it is down or refuses: OS and SMTP errors (OSError), a header the
    mail library refuses (ValueError), and boto's, when the s3 extra is installed."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return (OSError, ValueError)
    return (OSError, ValueError, BotoCoreError, ClientError)


SINK_ERRORS = _sink_errors()


def _failure(error: BaseException) -> str:
    """What went wrong, safe for a log line: the kind of error and an OS or S3 code, never a message
    that could carry a credential (an endpoint URL with a password, a server's reply)."""
    name = type(error).__name__
    code = getattr(error, "strerror", None) or getattr(error, "response", {}).get("Error", {}).get("Code")
    return f"{name}: {code}" if code and code != name else name


class FileSink:
    """Append-only JSON lines, written on an O_APPEND descriptor (every write lands at the end, also
    with two runs at once) and fsynced before the delivery counts. Make the file append-only at the
    OS level (chattr +a) or keep it on another host's mount (docs/operations.md)."""

    batch = 100

    def __init__(self, spec: SinkSpec) -> None:
        assert spec.path is not None
        self.spec, self.path = spec, spec.path

    def deliver(self, lines: Sequence[str]) -> None:
        created = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            data = "".join(line + "\n" for line in lines).encode()
            if not created and self._ends_without_newline():
                data = b"\n" + data  # never glue a line to a torn one left by a crash
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def _ends_without_newline(self) -> bool:
        with self.path.open("rb") as existing:
            existing.seek(0, os.SEEK_END)
            if existing.tell() == 0:
                return False
            existing.seek(-1, os.SEEK_END)
            return existing.read(1) != b"\n"

    def read(self, tenant_id: int | None, latest_only: bool) -> Iterator[SinkLine]:
        """Every line: which tenant a line is about, and which is its latest, shows only once parsed."""
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            number = 0
            while text := handle.readline(MAX_LINE_CHARS + 2):
                number += 1
                rest = text
                while rest and not rest.endswith("\n"):  # an overlong line: skip it without holding it
                    rest = handle.readline(64 * 1024)
                if text.strip():
                    yield SinkLine(f"line {number}", text.strip())


class S3Sink:
    """One object per checkpoint, `<prefix>/tenant-<id>/<number>-<digest>.json`: a retry rewrites the
    same key with the same bytes, and a second checkpoint with the same number (after a database
    restore) sits beside the first instead of replacing it. Use a bucket with Object Lock."""

    batch = 1

    def __init__(self, spec: SinkSpec) -> None:
        import boto3

        self.spec = spec
        self.client = boto3.client("s3", endpoint_url=settings.LIKENESS_AUDIT_ANCHOR_S3_ENDPOINT_URL)

    def _key(self, line: str) -> str:
        body = json.loads(line)["checkpoint"]
        fields = json.loads(body)
        name = f"{fields['number']:012d}-{body_digest(body)}.json"
        return f"{self.spec.prefix}/tenant-{fields['tenant_id']}/{name}"

    def deliver(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.client.put_object(
                Bucket=self.spec.bucket,
                Key=self._key(line),
                Body=line.encode(),
                ContentType="application/json",
            )

    def _keys(self, tenant_id: int | None) -> Iterator[str]:
        prefix = f"{self.spec.prefix}/" + (f"tenant-{tenant_id}/" if tenant_id is not None else "")
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.spec.bucket, Prefix=prefix
        ):
            for item in page.get("Contents", []):
                yield item["Key"]

    def read(self, tenant_id: int | None, latest_only: bool) -> Iterator[SinkLine]:
        keys = sorted(self._keys(tenant_id))
        if latest_only:
            # Keys sort by tenant, then by zero-padded number: the last per tenant folder is the latest.
            latest: dict[str, str] = {}
            for key in keys:
                latest[key.rsplit("/", 1)[0]] = key
            keys = sorted(latest.values())
        for key in keys:
            body = self.client.get_object(Bucket=self.spec.bucket, Key=key, Range=f"bytes=0-{MAX_LINE_CHARS}")
            text = body["Body"].read().decode("utf-8", errors="replace")
            yield SinkLine(f"object {key.removeprefix(self.spec.prefix + '/')}", text.strip())


class EmailSink:
    """Checkpoints by e-mail to legal reviewers (write-only): a copy outside every system we run."""

    batch = CHECKPOINTS_PER_EMAIL

    def __init__(self, spec: SinkSpec) -> None:
        self.spec = spec

    def deliver(self, lines: Sequence[str]) -> None:
        body = (
            "New signed checkpoints of the Likeness audit log (one per line). Keep this message: each "
            "line proves how long a tenant's audit chain was and what its last entry's hash was at the "
            "time, and lets anyone holding the public key below check it (docs/operations.md, "
            '"Checking a checkpoint yourself").\n\n'
            f"Public key: {current_public_key_text()}\n\n" + "".join(line + "\n" for line in lines)
        )
        EmailMessage(
            subject=f"Likeness audit checkpoints ({len(lines)})",
            body=body,
            to=list(self.spec.addresses),
        ).send(fail_silently=False)


Sink = FileSink | S3Sink | EmailSink


def _open_sink(spec: SinkSpec) -> Sink:
    if spec.kind == "file":
        return FileSink(spec)
    if spec.kind == "s3":
        return S3Sink(spec)
    return EmailSink(spec)


def configured_sinks() -> list[SinkSpec]:
    return parse_sinks(settings.LIKENESS_AUDIT_ANCHOR_SINKS)


# --- the anchor run -------------------------------------------------------------------------


@dataclass
class AnchorRun:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        logger.error("audit anchor: %s", message)
        self.failures.append(message)


def _checkpoint_tenant(tenant: Tenant, key: Ed25519PrivateKey, run: AnchorRun) -> bool:
    """Sign a checkpoint of `tenant`'s chain if it grew and still extends the last one; True if signed."""
    previous = AuditCheckpoint.objects.filter(tenant=tenant).order_by("-number").first()
    after = (previous.seq, previous.head_hash) if previous is not None else (0, GENESIS_HASH)
    last = AuditEntry.objects.for_tenant(tenant).order_by("-seq").values_list("seq", "hash").first()
    if (last is None and previous is None) or last == after:
        return False  # nothing new since the last checkpoint
    problem = problem_since(tenant, *after)
    if problem or last is None:
        run.fail(f"tenant {tenant.slug}: not anchored: {problem} (manage.py verify_audit tells more)")
        return False
    checkpoint = sign_checkpoint(
        key,
        tenant_id=tenant.pk,
        tenant_slug=tenant.slug,
        number=previous.number + 1 if previous is not None else 1,
        seq=last[0],
        head_hash=last[1],
        at=format_timestamp(timezone.now()),
        previous=previous.digest if previous is not None else None,
    )
    try:
        with transaction.atomic():
            AuditCheckpoint.objects.create(
                tenant=tenant,
                number=checkpoint.number,
                seq=checkpoint.seq,
                head_hash=checkpoint.head_hash,
                digest=checkpoint.digest,
                line=checkpoint.line,
                created_at=timezone.now(),
            )
    except IntegrityError:
        return False  # a concurrent run signed this number first; its checkpoint stands
    return True


def _deliver(spec: SinkSpec, run: AnchorRun) -> None:
    """Hand the sink every checkpoint it lacks, oldest first; stop at its first failure."""
    with transaction.atomic():
        pending = list(
            AuditCheckpoint.objects.select_for_update(skip_locked=True)
            .exclude(deliveries__sink=spec.name)
            .order_by("id")[:MAX_DELIVERIES_PER_RUN]
        )
        delivered = 0
        try:
            sink = _open_sink(spec)
            while delivered < len(pending):
                batch = pending[delivered : delivered + sink.batch]
                sink.deliver([checkpoint.line for checkpoint in batch])
                now = timezone.now()
                AuditCheckpointDelivery.objects.bulk_create(
                    [AuditCheckpointDelivery(checkpoint=c, sink=spec.name, delivered_at=now) for c in batch],
                    ignore_conflicts=True,
                )
                delivered += len(batch)
        except SINK_ERRORS as error:
            run.fail(
                f"delivery to {spec.name} failed ({_failure(error)}); "
                f"{len(pending) - delivered} checkpoint(s) will be retried on the next run"
            )
    if delivered:
        run.lines.append(f"delivered {delivered} checkpoint(s) to {spec.name}")


def anchor_chains(tenants: Iterable[Tenant] | None = None) -> AnchorRun:
    run = AnchorRun()
    key = current_signing_key()
    signed = sum(
        _checkpoint_tenant(tenant, key, run)
        for tenant in (tenants if tenants is not None else Tenant.objects.order_by("slug"))
    )
    run.lines.insert(0, f"{signed} new checkpoint(s)")
    for spec in configured_sinks():
        _deliver(spec, run)
    return run


# --- reading back ---------------------------------------------------------------------------


@dataclass
class Evidence:
    """What the readable sink says about the chains, for audit.verification.

    `complete` is True when every checkpoint was read (manage.py verify_audit), False when only
    each tenant's latest was (the verify page and API: one object per tenant on S3).
    """

    source: str
    complete: bool
    checkpoints: dict[int, list[Checkpoint]] = field(default_factory=lambda: defaultdict(list))
    problems: dict[int | None, list[str]] = field(default_factory=lambda: defaultdict(list))

    def for_tenant(self, tenant_id: int) -> tuple[list[Checkpoint], list[str]]:
        return self.checkpoints.get(tenant_id, []), [
            *self.problems.get(None, []),
            *self.problems.get(tenant_id, []),
        ]


def _missing(first: int, last: int) -> str:
    if first == last:
        return f"checkpoint #{first} is missing from the sink"
    return f"checkpoints #{first}..#{last} are missing from the sink"


def _sequence_problems(checkpoints: list[Checkpoint]) -> list[str]:
    """Numbering and links of one tenant's whole checkpoint history, sorted by number."""
    problems: list[str] = []
    previous: Checkpoint | None = None
    for checkpoint in checkpoints:
        if previous is None:
            if checkpoint.number > 1:
                problems.append(_missing(1, checkpoint.number - 1))
        elif checkpoint.number == previous.number:
            problems.append(
                f"two different checkpoints #{checkpoint.number} (a fork: was the database restored?)"
            )
        elif checkpoint.number > previous.number + 1:
            problems.append(_missing(previous.number + 1, checkpoint.number - 1))
        elif checkpoint.previous != previous.digest or checkpoint.seq <= previous.seq:
            problems.append(f"checkpoint #{checkpoint.number} does not follow #{previous.number}")
        previous = checkpoint
    return problems


def read_evidence(tenant_id: int | None = None, *, complete: bool = True) -> Evidence:
    """Checkpoints of one tenant (or all) from the first readable sink, signatures checked."""
    spec = next(spec for spec in configured_sinks() if spec.readable)
    evidence = Evidence(source=spec.name, complete=complete)
    trusted = trusted_keys()
    seen: dict[int, dict[str, Checkpoint]] = defaultdict(dict)
    try:
        sink = _open_sink(spec)
        assert not isinstance(sink, EmailSink)
        for line in sink.read(tenant_id, latest_only=not complete):
            try:
                checkpoint = open_line(line.text, trusted)
            except CheckpointError as error:
                if tenant_id is None or error.tenant_id in (None, tenant_id):
                    evidence.problems[error.tenant_id].append(f"checkpoint store, {line.where}: {error}")
                continue
            if tenant_id is None or checkpoint.tenant_id == tenant_id:
                seen[checkpoint.tenant_id][checkpoint.digest] = checkpoint  # a retried append repeats a line
    except SINK_ERRORS as error:  # an unreadable sink verifies nothing: say so, never "intact"
        logger.error("audit anchor: reading %s failed (%s)", spec.name, _failure(error))
        evidence.problems[None].append(f"the checkpoint store could not be read ({_failure(error)})")
    for ident, by_digest in seen.items():
        ordered = sorted(by_digest.values(), key=lambda c: (c.number, c.digest))
        if not complete:
            ordered = ordered[-1:]
        evidence.checkpoints[ident] = ordered
        if complete:
            evidence.problems[ident].extend(_sequence_problems(ordered))
    return evidence
