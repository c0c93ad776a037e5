"""Walk a tenant's chain and name the first entry that does not hold.

An entry holds when its seq is the next one, its prev_hash is the previous
entry's hash, and its hash recomputes from its own content. Altering a row
breaks its hash; removing one leaves a gap; swapping two breaks both seqs'
hashes (seq is hashed); cutting the tail shows against the chain head.
"""

from __future__ import annotations

from dataclasses import dataclass

from audit.chain import GENESIS_HASH, canonical_entry, chain_hash
from audit.models import AuditChainHead, AuditEntry
from tenancy.models import Tenant


@dataclass(frozen=True)
class ChainReport:
    tenant_slug: str
    entries: int
    first_bad_seq: int | None = None
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.first_bad_seq is None

    def describe(self) -> str:
        if self.intact:
            return f"tenant {self.tenant_slug}: intact, {self.entries} entries"
        return f"tenant {self.tenant_slug}: BROKEN at seq {self.first_bad_seq}: {self.problem}"


def verify_chain(tenant: Tenant) -> ChainReport:
    expected_seq = 1
    prev_hash = GENESIS_HASH
    count = 0
    entries = AuditEntry.objects.for_tenant(tenant).order_by("seq")
    for entry in entries.iterator(chunk_size=2000):
        count += 1
        if entry.seq > expected_seq:
            problem = f"entry missing (the next stored entry is seq {entry.seq})"
            return ChainReport(tenant.slug, count, expected_seq, problem)
        if entry.seq < expected_seq:
            return ChainReport(tenant.slug, count, entry.seq, "duplicate or out-of-order seq")
        if entry.prev_hash != prev_hash:
            problem = "prev_hash does not match the previous entry's hash (reordered or replaced)"
            return ChainReport(tenant.slug, count, entry.seq, problem)
        recomputed = chain_hash(
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
        if recomputed != entry.hash:
            return ChainReport(tenant.slug, count, entry.seq, "content does not match its hash (altered)")
        prev_hash = entry.hash
        expected_seq += 1
    head = AuditChainHead.objects.filter(tenant_id=tenant.pk).first()
    if head is not None and (head.last_seq != count or head.last_hash != prev_hash):
        if head.last_seq > count:
            return ChainReport(tenant.slug, count, count + 1, f"entries {count + 1}..{head.last_seq} missing")
        return ChainReport(tenant.slug, count, head.last_seq, "chain head does not match the last entry")
    return ChainReport(tenant.slug, count)


def verify_all(tenants: list[Tenant] | None = None) -> list[ChainReport]:
    return [
        verify_chain(tenant)
        for tenant in (tenants if tenants is not None else Tenant.objects.order_by("slug"))
    ]
