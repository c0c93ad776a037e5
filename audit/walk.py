"""Walking a tenant's chain in the database: shared by verification and by the anchor run.

An entry holds when its seq is the next one, its prev_hash is the previous entry's hash, and
its hash recomputes from its own content. Altering a row breaks its hash; removing one leaves
a gap; swapping two breaks both seqs' hashes (seq is hashed). None of that catches someone
who recomputes every later hash: that is what the signed checkpoints passed in are for.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connections, router
from django.db.models import CharField, Expression, F, Func, QuerySet, TextField
from django.db.models.functions import Cast

from audit.chain import GENESIS_HASH, TIMESTAMP_TO_CHAR, canonical_entry, chain_hash, subject_reference
from audit.checkpoints import Checkpoint
from audit.models import AuditChainHead, AuditEntry
from tenancy.models import Tenant

# The columns a walk checks, read as tuples: a model instance per entry cost more than the hashing.
# The facts come as JSON text and are decoded here: the same dict JSONField would give, without
# Django's per-row converter calls.
_WALKED = (
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "payload_text",
    "subject_ref",
    "prev_hash",
    "hash",
)
# PostgreSQL's text of a jsonb value has no surrounding whitespace: raw_decode skips json.loads's
# two whitespace scans and its wrapper (a tenth of the walk).
_PAYLOAD_DECODER = json.JSONDecoder()
# Rows per fetch from the server-side cursor: few round trips, bounded memory (~10 MB).
WALK_CHUNK = 10_000


class _UtcText(Func):
    """A timestamptz as the hashed text (audit.chain.TIMESTAMP_TO_CHAR), made by PostgreSQL."""

    template = f"to_char(%(expressions)s AT TIME ZONE 'UTC', '{TIMESTAMP_TO_CHAR}')"
    output_field = CharField()


def _hashed_time() -> Expression | F:
    """An entry's time as the walk reads it: the hashed text on PostgreSQL; elsewhere (SQLite in
    development) the datetime, which canonical_entry formats itself."""
    vendor = connections[router.db_for_read(AuditEntry)].vendor
    return _UtcText("at") if vendor == "postgresql" else F("at")


_Handed = list[tuple[Any, ...]] | BaseException | None


def _read_ahead(rows: QuerySet[Any, tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """The rows in order, each next chunk fetched by another thread while this one hashes the last.

    The walk is Python hashing, and each fetch mostly waits for PostgreSQL to format 10,000 rows:
    one after the other, the database's time adds to the hashing's (bench/audit_throughput.py: a
    tenth more entries per second read ahead). The reader has its own connection, so inside a
    transaction (a test, a shell), whose rows no other connection sees, the rows are read here
    instead. A walk that stops early stops the reader; the reader's error is raised here.
    """
    connection = connections[rows.db]
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield from rows.iterator(chunk_size=WALK_CHUNK)
        return
    chunks: queue.Queue[_Handed] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def hand_over(item: _Handed) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            chunk: list[tuple[Any, ...]] = []
            for row in rows.iterator(chunk_size=WALK_CHUNK):
                chunk.append(row)
                if len(chunk) == WALK_CHUNK:
                    if not hand_over(chunk):
                        return
                    chunk = []
            if hand_over(chunk):
                hand_over(None)
        except BaseException as error:  # raised again in the walking thread
            hand_over(error)
        finally:
            connections.close_all()  # this thread's: back to the pool

    reader = threading.Thread(target=read, name="audit-walk-reader", daemon=True)
    reader.start()
    try:
        while (item := chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield from item
    finally:
        stop.set()
        reader.join()


@dataclass(frozen=True)
class Walk:
    last_seq: int  # the last entry that holds (the start when none does)
    last_hash: str
    first_bad_seq: int | None = None
    problem: str = ""


def recomputed_hash(entry: AuditEntry) -> str:
    """The hash that the entry's content and its prev_hash give (what its stored hash must equal)."""
    return chain_hash(
        entry.prev_hash,
        canonical_entry(
            tenant_id=entry.tenant_id,
            seq=entry.seq,
            at=entry.at,
            actor_id=entry.actor_id,
            action=entry.action,
            target_type=entry.target_type,
            target_id=entry.target_id,
            payload=entry.payload,
        ),
    )


def walk_chain(
    tenant: Tenant,
    *,
    after_seq: int = 0,
    after_hash: str = GENESIS_HASH,
    checkpoints: Mapping[int, Checkpoint] | None = None,
) -> Walk:
    """Check the entries after `after_seq` (whose hash is `after_hash`), and each against the
    checkpoint taken at its seq; stop at the first that does not hold.

    Every entry is hashed again from the same canonical form record() hashed (audit.chain), so
    the walk and the writer cannot disagree about what an entry says."""
    expected_seq, prev_hash = after_seq + 1, after_hash
    anchored_seq = after_seq  # the last seq a checkpoint confirmed
    tenant_id, decode = tenant.pk, _PAYLOAD_DECODER.raw_decode  # once, not once per entry
    checkpoints = checkpoints or {}
    rows = _read_ahead(
        AuditEntry.objects.for_tenant(tenant)
        .filter(seq__gt=after_seq)
        .order_by("seq")
        .annotate(payload_text=Cast("payload", TextField()))
        .values_list("seq", _hashed_time(), *_WALKED)
    )
    for (
        seq,
        at,
        actor_id,
        action,
        target_type,
        target_id,
        payload_text,
        subject_ref,
        stored_prev,
        stored,
    ) in rows:
        payload = decode(payload_text)[0]
        problem = ""
        if seq > expected_seq:
            problem = f"entry missing (the next stored entry is seq {seq})"
        elif seq < expected_seq:
            problem = "duplicate or out-of-order seq"
        elif stored_prev != prev_hash:
            problem = "prev_hash does not match the previous entry's hash (reordered or replaced)"
        elif stored != chain_hash(
            prev_hash,
            canonical_entry(
                tenant_id=tenant_id,
                seq=seq,
                at=at,
                actor_id=actor_id,
                action=action,
                target_type=target_type,
                target_id=target_id,
                payload=payload,
            ),
        ):
            problem = "content does not match its hash (altered)"
        elif subject_ref != subject_reference(target_type, target_id, payload):
            problem = "its subject reference does not match its content (altered)"
        if problem:
            return Walk(expected_seq - 1, prev_hash, min(seq, expected_seq), problem)
        checkpoint = checkpoints.get(seq)
        if checkpoint is not None:
            if checkpoint.head_hash != stored:
                problem = (
                    f"entries {anchored_seq + 1}..{seq} were rewritten: seq {seq} no longer has "
                    f"the hash that signed {checkpoint.describe()} recorded"
                )
                return Walk(anchored_seq, prev_hash, anchored_seq + 1, problem)
            anchored_seq = seq
        prev_hash, expected_seq = stored, expected_seq + 1
    return Walk(expected_seq - 1, prev_hash)


def head_problem(tenant: Tenant, last_seq: int, last_hash: str) -> tuple[int | None, str] | None:
    """How the chain head row disagrees with the last entry that holds, if it does.

    The head lets a cut tail show even without a checkpoint: it only moves forward (trigger).
    """
    head = AuditChainHead.objects.filter(tenant_id=tenant.pk).first()
    if head is None:
        return (None, "the chain head row is missing (deleted)") if last_seq else None
    if head.last_seq > last_seq:
        return last_seq + 1, f"entries {last_seq + 1}..{head.last_seq} missing"
    if head.last_seq != last_seq or head.last_hash != last_hash:
        return head.last_seq, "chain head does not match the last entry"
    return None


def problem_since(tenant: Tenant, after_seq: int, after_hash: str) -> str:
    """Why the chain does not extend the given point (a checkpoint), or "" when it does.

    The anchor run signs a new checkpoint only when this is "": it never vouches for a chain
    that no longer contains what the previous checkpoint vouched for.
    """
    if after_seq:
        anchor = AuditEntry.objects.for_tenant(tenant).filter(seq=after_seq).values_list("hash", flat=True)
        if anchor.first() != after_hash:
            return f"entry {after_seq} is gone or no longer has the hash of the last checkpoint"
    walk = walk_chain(tenant, after_seq=after_seq, after_hash=after_hash)
    if walk.problem:
        return f"seq {walk.first_bad_seq}: {walk.problem}"
    head = head_problem(tenant, walk.last_seq, walk.last_hash)
    return head[1] if head else ""
