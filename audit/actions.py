"""The only way into the audit log: `record()`.

Call it inside the caller's transaction, next to the write it describes, so the
entry commits or rolls back with it. Appends to a tenant's chain are serialized
by a row lock on the tenant (SELECT ... FOR UPDATE on PostgreSQL; SQLite runs
write transactions one at a time), so seq stays gapless and the chain never forks.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models, router, transaction
from django.utils import timezone

from audit.chain import GENESIS_HASH, canonical_entry, chain_hash, normalize_payload, subject_reference
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
    if not isinstance(tenant, Tenant) or tenant.pk is None:
        raise ValueError("record() needs a saved Tenant.")
    if not ACTION_PATTERN.match(action):
        raise ValueError(
            f"Audit action must be a dotted lowercase name like 'membership.added', got {action!r}."
        )
    if actor is not None and not actor.is_authenticated:
        actor = None  # an anonymous visitor is not a user we can name
    kind, ident = _target_fields(target, target_type, target_id)
    body = normalize_payload(payload)

    using = router.db_for_write(AuditEntry)
    with transaction.atomic(using=using):
        # The per-tenant lock: every appender for this tenant queues here.
        Tenant.objects.using(using).select_for_update().filter(pk=tenant.pk).values_list(
            "pk", flat=True
        ).get()
        last_seq, last_hash = _chain_end(tenant.pk, using)
        entry = _append(
            using,
            last_seq,
            last_hash,
            tenant_id=tenant.pk,
            actor_id=actor.pk if actor is not None else None,
            action=action,
            target_type=kind,
            target_id=ident,
            payload=body,
        )
    return entry


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
    rebuilt = _append(
        using,
        *last,
        tenant_id=tenant_id,
        actor_id=None,
        action="audit.head_rebuilt",
        target_type="",
        target_id="",
        payload={"reason": reason, "head_seq": head_seq, "last_entry_seq": last[0]},
    )
    return rebuilt.seq, rebuilt.hash


def _append(using: str, after_seq: int, after_hash: str, **fields: Any) -> AuditEntry:
    """Insert the entry after (after_seq, after_hash) and move the head to it (the caller holds the lock)."""
    fields.update(seq=after_seq + 1, at=timezone.now())
    digest = chain_hash(after_hash, canonical_entry(**fields))
    subject_ref = subject_reference(fields["target_type"], fields["target_id"], fields["payload"])
    entry = AuditEntry(**fields, subject_ref=subject_ref, prev_hash=after_hash, hash=digest)
    entry.save(using=using)
    AuditChainHead.objects.using(using).filter(tenant_id=fields["tenant_id"]).update(
        last_seq=entry.seq, last_hash=digest
    )
    return entry


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
