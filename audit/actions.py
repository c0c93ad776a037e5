"""The only way into the audit log: `record()`, and `record_each()` for several facts of one write.

Call it inside the caller's transaction, next to the write it describes, so the
entry commits or rolls back with it. Appends to a tenant's chain are serialized
by a row lock on the tenant's chain head (SELECT ... FOR UPDATE on PostgreSQL;
SQLite runs write transactions one at a time), so seq stays gapless and the chain
never forks. An append is two statements on PostgreSQL: the locking read of the
head (which also sees whether the entries ran past it), and one statement that
inserts the entry and moves the head. No savepoint: a failed append fails the
caller's transaction, which is what an unaudited write must do anyway. The rare
repair of a missing or rolled-back head (`_chain_end`) takes the tenant row lock
so that two writers never both create one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connections, models, router, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from audit.chain import (
    GENESIS_HASH,
    canonical_entry,
    canonical_json,
    chain_hash,
    normalize_payload,
    subject_reference,
)
from audit.models import AuditChainHead, AuditEntry
from tenancy.models import Tenant

ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


def _target_fields(
    target: models.Model | None, target_type: str | None, target_id: str | int | uuid.UUID | None
) -> tuple[str, str]:
    if target is not None:
        if target_type is not None or target_id is not None:
            raise ValueError("Give either target or target_type/target_id, not both.")
        if target.pk is None:
            raise ValueError("The audit target must be saved first (it has no id yet).")
        return target._meta.label_lower, str(target.pk)
    if (target_type is None) != (target_id is None):
        raise ValueError("target_type and target_id go together.")
    return target_type or "", "" if target_id is None else str(target_id)


@dataclass(frozen=True)
class Fact:
    """One entry for record_each(): record()'s arguments but the tenant."""

    action: str
    actor: AbstractBaseUser | AnonymousUser | None = None
    target: models.Model | None = None
    target_type: str | None = None
    target_id: str | int | uuid.UUID | None = None
    payload: dict[str, Any] | None = None


def record(
    *,
    tenant: Tenant,
    action: str,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    target: models.Model | None = None,
    target_type: str | None = None,
    target_id: str | int | uuid.UUID | None = None,
    payload: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry to `tenant`'s chain; actor None means the system did it."""
    fact = Fact(action, actor, target, target_type, target_id, payload)
    return record_each(tenant, [fact])[0]


def record_each(tenant: Tenant, facts: Sequence[Fact]) -> list[AuditEntry]:
    """Append several entries to `tenant`'s chain, in this order, under one lock of the head.

    Still two statements on PostgreSQL, however many entries: for one write that is several facts
    (an erasure opens its certificate and destroys the key). Every fact is checked before anything
    is written, so a bad one writes none of them.
    """
    if not isinstance(tenant, Tenant) or tenant.pk is None:
        raise ValueError("record() needs a saved Tenant.")
    rows = [_row(tenant.pk, fact) for fact in facts]
    if not rows:
        return []
    using = router.db_for_write(AuditEntry)
    with transaction.atomic(using=using, savepoint=False):
        end = _locked_head(tenant.pk, using)
        if end is None:
            # Missing, or behind the entries: repair under the tenant lock (see _chain_end). NO KEY
            # UPDATE, so that appenders holding the head, whose inserts take a key-share lock on the
            # tenant through the foreign key, never wait for this one while it waits for them.
            Tenant.objects.using(using).select_for_update(no_key=True).filter(pk=tenant.pk).values_list(
                "pk", flat=True
            ).get()
            end = _locked_head(tenant.pk, using) or _chain_end(tenant.pk, using)
        return _append(using, *end, rows)


def _row(tenant_id: int, fact: Fact) -> dict[str, Any]:
    """The entry's fields before it is chained; ValueError or AuditPayloadError says what is wrong."""
    if not ACTION_PATTERN.match(fact.action):
        raise ValueError(
            f"Audit action must be a dotted lowercase name like 'membership.added', got {fact.action!r}."
        )
    actor = fact.actor
    if actor is not None and not actor.is_authenticated:
        actor = None  # an anonymous visitor is not a user we can name
    kind, ident = _target_fields(fact.target, fact.target_type, fact.target_id)
    return {
        "tenant_id": tenant_id,
        "actor_id": actor.pk if actor is not None else None,
        "action": fact.action,
        "target_type": kind,
        "target_id": ident,
        "payload": normalize_payload(fact.payload),
    }


_LOCK_HEAD = """
SELECT head.last_seq, head.last_hash,
    (SELECT seq FROM audit_auditentry WHERE tenant_id = head.tenant_id ORDER BY seq DESC LIMIT 1)
FROM audit_auditchainhead head
WHERE head.tenant_id = %s
FOR UPDATE OF head
"""


def _locked_head(tenant_id: int, using: str) -> tuple[int, str] | None:
    """The head's (seq, hash), locked, when it exists and no entry lies beyond it; else None.

    On PostgreSQL one fixed statement: building this query through the ORM cost more Python
    time than the round trip, on the path of every audited write.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_HEAD, [tenant_id])
            row = cursor.fetchone()
    else:
        last_entry = (
            AuditEntry.dangerously_unscoped.using(using)
            .filter(tenant_id=OuterRef("tenant_id"))
            .order_by("-seq")
            .values("seq")[:1]
        )
        row = (
            AuditChainHead.objects.using(using)
            .select_for_update(of=("self",))
            .filter(tenant_id=tenant_id)
            .annotate(last_entry=Subquery(last_entry))
            .values_list("last_seq", "last_hash", "last_entry")
            .first()
        )
    if row is None or (row[2] is not None and row[2] > row[0]):
        return None
    return row[0], row[1]


def _chain_end(tenant_id: int, using: str) -> tuple[int, str]:
    """The seq and hash to append after, from the head row, rebuilt when that row was lost.

    The head is normally right; a database owner can still delete it or move it back (the
    trigger stops everyone else). Appending after such a head would collide with an existing
    seq on every write from then on, so the head is rebuilt from the last stored entry and an
    `audit.head_rebuilt` entry says so; what was lost shows against the signed checkpoints. A
    head ahead of the entries (a cut tail) is kept: the gap it leaves is the evidence.
    """
    head = AuditChainHead.objects.using(using).filter(tenant_id=tenant_id).first()
    last = (
        AuditEntry.dangerously_unscoped.using(using)
        .filter(tenant_id=tenant_id)
        .order_by("-seq")
        .values_list("seq", "hash")
        .first()
    )
    if head is None:
        head = AuditChainHead.objects.using(using).create(
            tenant_id=tenant_id, last_seq=0, last_hash=GENESIS_HASH
        )
        reason, head_seq = "missing", None
    else:
        reason, head_seq = "behind", head.last_seq
    if last is None or last[0] <= head.last_seq:
        return head.last_seq, head.last_hash
    (rebuilt,) = _append(
        using,
        *last,
        [
            {
                "tenant_id": tenant_id,
                "actor_id": None,
                "action": "audit.head_rebuilt",
                "target_type": "",
                "target_id": "",
                "payload": {"reason": reason, "head_seq": head_seq, "last_entry_seq": last[0]},
            }
        ],
    )
    return rebuilt.seq, rebuilt.hash


_ENTRY_COLUMNS = (
    "tenant_id, seq, at, actor_id, action, target_type, target_id, payload, subject_ref, prev_hash, hash"
)
_ENTRY_VALUES = "(%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s)"
_INSERT_AND_MOVE_HEAD = """
WITH entry AS (
    INSERT INTO audit_auditentry ({columns}) VALUES {values}
    RETURNING id, seq
)
UPDATE audit_auditchainhead SET last_seq = %s, last_hash = %s
WHERE tenant_id = %s
RETURNING (SELECT array_agg(id ORDER BY seq) FROM entry)
"""


def _append(using: str, after_seq: int, after_hash: str, rows: list[dict[str, Any]]) -> list[AuditEntry]:
    """Chain the entries after (after_seq, after_hash), insert them, move the head (its lock is held)."""
    entries: list[AuditEntry] = []
    for fields in rows:
        seq = after_seq + 1 + len(entries)
        prev_hash = entries[-1].hash if entries else after_hash
        at = timezone.now()
        digest = chain_hash(prev_hash, canonical_entry(**fields, seq=seq, at=at))
        subject_ref = subject_reference(fields["target_type"], fields["target_id"], fields["payload"])
        entries.append(
            AuditEntry(**fields, seq=seq, at=at, subject_ref=subject_ref, prev_hash=prev_hash, hash=digest)
        )
    tenant_id, last = rows[0]["tenant_id"], entries[-1]
    connection = connections[using]
    if connection.vendor != "postgresql":
        for entry in entries:
            entry.save(using=using)
        AuditChainHead.objects.using(using).filter(tenant_id=tenant_id).update(
            last_seq=last.seq, last_hash=last.hash
        )
        return entries
    parameters: list[Any] = []
    for entry in entries:
        parameters += [tenant_id, entry.seq, entry.at, entry.actor_id, entry.action, entry.target_type]
        parameters += [entry.target_id, canonical_json(entry.payload), entry.subject_ref, entry.prev_hash]
        parameters.append(entry.hash)
    statement = _INSERT_AND_MOVE_HEAD.format(
        columns=_ENTRY_COLUMNS, values=", ".join([_ENTRY_VALUES] * len(entries))
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [*parameters, last.seq, last.hash, tenant_id])
        row = cursor.fetchone()
    if row is None or row[0] is None:
        raise RuntimeError("the audit chain head vanished while its lock was held")
    for entry, pk in zip(entries, row[0], strict=True):
        entry.pk = pk
        entry._state.adding, entry._state.db = False, using
    return entries


def record_export(
    *, actor: AbstractBaseUser | AnonymousUser, tenant: Tenant, file_format: str, filters: dict[str, str]
) -> AuditEntry:
    """Exports of the log are themselves facts a reviewer may need: who took which part, when."""
    from tenancy.permissions import require_perm

    require_perm(actor, tenant, "audit.export_auditentry")
    return record(
        tenant=tenant,
        action="audit.exported",
        actor=actor,
        payload={"format": file_format, "filters": {key: value for key, value in filters.items() if value}},
    )
