"""Verify each tenant's chain, and the chain against the signed checkpoints kept outside the database.

Detected: any entry altered, removed, inserted or reordered (the chain); entries rewritten with
every later hash recomputed, up to the latest checkpoint (its signed head hash no longer
matches: the report names the span between the two checkpoints around it); the chain cut below
a checkpoint, head rolled back or not, down to "0 entries" (the checkpoint still counts them);
a checkpoint altered, forged without the key, or, reading every checkpoint, removed from the
sink's middle. Not detected: a consistent rewrite of entries newer than the latest checkpoint
(the report names them), or of a tenant never anchored (reported UNANCHORED, not intact).
docs/operations.md says the same for operators.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from audit.anchoring import Evidence, read_evidence
from audit.models import AuditEntry
from audit.walk import head_problem, walk_chain
from tenancy.models import Tenant

HEAD_REBUILT = "audit.head_rebuilt"
_MAX_NOTED = 10


class ChainStatus(enum.StrEnum):
    INTACT = "intact"  # holds, and matches its latest signed checkpoint
    UNANCHORED = "unanchored"  # holds, but no checkpoint outside the database vouches for it
    BROKEN = "broken"


@dataclass(frozen=True)
class ChainReport:
    tenant_slug: str
    entries: int
    status: ChainStatus
    first_bad_seq: int | None = None
    problem: str = ""
    anchored_seq: int | None = None  # the seq the latest checkpoint covers
    anchored_at: str | None = None
    checkpoints: int = 0  # checkpoints checked
    notes: tuple[str, ...] = ()

    @property
    def intact(self) -> bool:
        return self.status == ChainStatus.INTACT

    def describe(self) -> str:
        head = f"tenant {self.tenant_slug}: "
        if self.status == ChainStatus.INTACT:
            head += (
                f"intact, {self.entries} entries, signed checkpoint of {self.anchored_at} "
                f"covers seq {self.anchored_seq}"
            )
        elif self.status == ChainStatus.UNANCHORED:
            head += f"UNANCHORED, {self.entries} entries hold together, but no signed checkpoint covers them"
        elif self.first_bad_seq is not None:
            head += f"BROKEN at seq {self.first_bad_seq}: {self.problem}"
        else:
            head += f"BROKEN: {self.problem}"
        return "; ".join([head, *self.notes])


def _span(first: int, last: int) -> str:
    return f"entry {first} is" if first == last else f"entries {first}..{last} are"


def _notes(tenant: Tenant, entries: int, anchored_seq: int | None) -> tuple[str, ...]:
    notes = []
    rebuilt = list(
        AuditEntry.objects.for_tenant(tenant)
        .filter(action=HEAD_REBUILT)
        .order_by("seq")
        .values_list("seq", flat=True)[:_MAX_NOTED]
    )
    if rebuilt:
        notes.append(
            f"the chain head was rebuilt at seq {', '.join(map(str, rebuilt))}: its row had been deleted "
            "or moved back by someone who can bypass the database trigger"
        )
    if anchored_seq is not None and entries > anchored_seq:
        notes.append(
            f"{_span(anchored_seq + 1, entries)} newer than the latest checkpoint: until the next one, only "
            "the chain itself protects them"
        )
    return tuple(notes)


def verify_chain(tenant: Tenant, evidence: Evidence | None = None) -> ChainReport:
    """Walk the chain and compare it with the checkpoints; by default only the latest checkpoint is read
    (the dashboard and API: fast on S3), `verify_audit` reads them all."""
    if evidence is None:
        evidence = read_evidence(tenant.pk, complete=False)
    checkpoints, sink_problems = evidence.for_tenant(tenant.pk)
    problems = list(sink_problems)
    problems += [
        f"{checkpoint.describe()} was signed for tenant {checkpoint.tenant_slug!r}, not {tenant.slug!r}"
        for checkpoint in checkpoints
        if checkpoint.tenant_slug != tenant.slug
    ][:1]
    walk = walk_chain(tenant, checkpoints={checkpoint.seq: checkpoint for checkpoint in checkpoints})
    first_bad_seq, chain_problem = walk.first_bad_seq, walk.problem
    latest = max(checkpoints, key=lambda checkpoint: checkpoint.seq, default=None)
    if not chain_problem and latest is not None and latest.seq > walk.last_seq:
        first_bad_seq = walk.last_seq + 1
        chain_problem = (
            f"{walk.last_seq} entries in the database, but signed {latest.describe()} covers {latest.seq}: "
            f"entries {walk.last_seq + 1}..{latest.seq} were removed"
        )
    elif not chain_problem and (head := head_problem(tenant, walk.last_seq, walk.last_hash)):
        first_bad_seq, chain_problem = head
    entries = AuditEntry.objects.for_tenant(tenant).count()
    problems = [chain_problem, *problems] if chain_problem else problems
    status = ChainStatus.BROKEN if problems else ChainStatus.INTACT if latest else ChainStatus.UNANCHORED
    return ChainReport(
        tenant_slug=tenant.slug,
        entries=entries,
        status=status,
        first_bad_seq=first_bad_seq if status == ChainStatus.BROKEN else None,
        problem="; ".join(problems),
        anchored_seq=latest.seq if latest else None,
        anchored_at=latest.at if latest else None,
        checkpoints=len(checkpoints),
        notes=_notes(tenant, entries, latest.seq if latest and status == ChainStatus.INTACT else None),
    )


def verify_all(
    tenants: Sequence[Tenant] | None = None, evidence: Evidence | None = None
) -> list[ChainReport]:
    """Every tenant (or the given ones) against every checkpoint the sink holds."""
    evidence = evidence if evidence is not None else read_evidence(complete=True)
    return [
        verify_chain(tenant, evidence)
        for tenant in (tenants if tenants is not None else Tenant.objects.order_by("slug"))
    ]


def orphaned_checkpoints(evidence: Evidence) -> list[str]:
    """Checkpoints of tenants the database no longer has: a tenant deleted with its whole log shows here."""
    known = set(Tenant.objects.values_list("pk", flat=True))
    problems = []
    for tenant_id, checkpoints in sorted(evidence.checkpoints.items()):
        if tenant_id not in known and checkpoints:
            latest = checkpoints[-1]
            problems.append(
                f"tenant id {tenant_id} ({latest.tenant_slug}, signed up to seq {latest.seq} by "
                f"{latest.describe()}): there is no such tenant in the database"
            )
    problems += [
        f"tenant id {tenant_id}: {problem}"
        for tenant_id, found in sorted((k, v) for k, v in evidence.problems.items() if k is not None)
        if tenant_id not in known
        for problem in found
    ]
    return problems
