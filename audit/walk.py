"""Walking a tenant's chain in the database: shared by verification and by the anchor run.

An entry holds when its seq is the next one, its prev_hash is the previous entry's hash, and
its hash recomputes from its own content. Altering a row breaks its hash; removing one leaves
a gap; swapping two breaks both seqs' hashes (seq is hashed). None of that catches someone
who recomputes every later hash: that is what the signed checkpoints passed in are for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from audit.chain import GENESIS_HASH, canonical_entry, chain_hash, subject_reference
from audit.checkpoints import Checkpoint
from audit.models import AuditChainHead, AuditEntry
from tenancy.models import Tenant


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
    checkpoint taken at its seq; stop at the first that does not hold."""
    expected_seq, prev_hash = after_seq + 1, after_hash
    anchored_seq = after_seq  # the last seq a checkpoint confirmed
    entries = AuditEntry.objects.for_tenant(tenant).filter(seq__gt=after_seq).order_by("seq")
    for entry in entries.iterator(chunk_size=2000):
        problem = ""
        if entry.seq > expected_seq:
            problem = f"entry missing (the next stored entry is seq {entry.seq})"
        elif entry.seq < expected_seq:
            problem = "duplicate or out-of-order seq"
        elif entry.prev_hash != prev_hash:
            problem = "prev_hash does not match the previous entry's hash (reordered or replaced)"
        elif recomputed_hash(entry) != entry.hash:
            problem = "content does not match its hash (altered)"
        elif entry.subject_ref != subject_reference(entry.target_type, entry.target_id, entry.payload):
            problem = "its subject reference does not match its content (altered)"
        if problem:
            return Walk(expected_seq - 1, prev_hash, min(entry.seq, expected_seq), problem)
        checkpoint = (checkpoints or {}).get(entry.seq)
        if checkpoint is not None:
            if checkpoint.head_hash != entry.hash:
                problem = (
                    f"entries {anchored_seq + 1}..{entry.seq} were rewritten: seq {entry.seq} no longer has "
                    f"the hash that signed {checkpoint.describe()} recorded"
                )
                return Walk(anchored_seq, prev_hash, anchored_seq + 1, problem)
            anchored_seq = entry.seq
        prev_hash, expected_seq = entry.hash, expected_seq + 1
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
