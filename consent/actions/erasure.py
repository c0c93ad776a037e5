"""Erasure: the key is destroyed in the triggering transaction, the files follow."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from audit.actions import Fact, record_each
from audit.actions import record as audit
from consent import vault
from consent.actions.common import Actor, ConsentActionError, acting_user
from consent.actions.files import delete_file_rows
from consent.erasure import registered_hooks
from consent.faults import crash_point
from consent.locks import locked_subject
from consent.models import DeletionCertificate, ErasureRequest, ErasureTrigger, Subject, SubjectKey
from consent.storage import private_storage, subject_prefix, walk
from tenancy.permissions import require_perm

logger = logging.getLogger(__name__)


def checkpoint_sqlite_wal() -> None:
    """On the embedded SQLite database, copy every committed page into the file and empty the WAL.

    secure_delete (settings) zeroes a deleted row's bytes, but in WAL mode only in the
    page written to the -wal file: the database file keeps the page with the wrapped key
    until a checkpoint copies the new one over it, and older WAL frames (the key's
    insert) stay readable until the WAL is truncated. A checkpoint cannot pass a reader
    still on an older snapshot; it then waits the busy timeout (20 s) and gives up, and
    the next retention sweep, which ends with the same checkpoint, finishes the job.
    PostgreSQL has no such step here (its residual risk is in docs/compliance.md).
    """
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        busy, wal_frames, checkpointed = cursor.fetchone()
    if busy:
        logger.warning(
            "SQLite WAL checkpoint after an erasure was blocked by a reader (%s of %s frames copied); "
            "the next retention sweep finishes it",
            checkpointed,
            wal_frames,
        )


def _enqueue_completion(certificate_id: int) -> None:
    from consent.tasks import complete_erasure_task

    complete_erasure_task.delay(certificate_id)


def holds_data(subject: Subject) -> bool:
    """Whether anything of the subject is stored (a live key or a file): else there is nothing to erase."""
    return (
        SubjectKey.objects.for_tenant(subject.tenant).filter(subject=subject).exists()
        or subject.assets.exists()
    )


def _closed_request(
    request: ErasureRequest, state: ErasureRequest.State, *, actor: Actor, at: datetime, **facts: object
) -> Fact:
    """Under the subject lock: how an erasure request ended, saved; its audit fact (ids and facts only)."""
    request.state = state
    request.decided_by = acting_user(actor)
    request.decided_at = at
    request.save(update_fields=["state", "decided_by", "decided_at", "decision_reason", "certificate"])
    return Fact(
        action=f"erasure.request_{state.value}",
        actor=actor,
        target=request,
        payload={"subject_id": request.subject_id, "trigger": request.trigger, **facts},
    )


def close_request(
    request: ErasureRequest, state: ErasureRequest.State, *, actor: Actor, at: datetime, **facts: object
) -> None:
    """Under the subject lock: how an erasure request ended, and its audit entry."""
    record_each(request.tenant, [_closed_request(request, state, actor=actor, at=at, **facts)])


def pending_requests(subject: Subject) -> list[ErasureRequest]:
    """The subject's erasure requests that still wait for an admin (read under the subject lock)."""
    return list(subject.erasure_requests.filter(state=ErasureRequest.State.PENDING))


def _close_overtaken_requests(
    pending: list[ErasureRequest], certificate: DeletionCertificate, actor: Actor
) -> list[Fact]:
    """Erasure requests still waiting for an admin are moot once the subject is erased for another reason."""
    closed = []
    for request in pending:
        request.certificate = certificate
        closed.append(
            _closed_request(
                request,
                ErasureRequest.State.OVERTAKEN,
                actor=actor,
                at=certificate.started_at,
                certificate_id=certificate.pk,
                erasure_trigger=certificate.trigger,
            )
        )
    return closed


def begin_erasure(
    subject: Subject,
    *,
    trigger: ErasureTrigger,
    actor: Actor,
    reason: str,
    enqueue: bool = True,
    pending: list[ErasureRequest] | None = None,
) -> DeletionCertificate | None:
    """Open a certificate and destroy the key, in the caller's transaction (which holds the subject lock).

    Idempotent: an open certificate is returned as is; a subject with neither
    key nor files gets none (there is nothing to destroy). Certificates carry
    wall-clock times, also when a sweep decides with a simulated `--now`.
    Erasure requests still pending are closed as overtaken (a caller erasing
    because of one closes that one first); `pending`: pending_requests(subject),
    when the caller read them under the same lock.
    """
    tenant = subject.tenant
    open_certificate = subject.deletion_certificates.filter(completed_at__isnull=True).first()
    if open_certificate is not None:
        return open_certificate
    subject_key = SubjectKey.objects.for_tenant(tenant).filter(subject=subject).first()
    if subject_key is None and not subject.assets.exists():
        return None  # neither key nor files: nothing to destroy
    started_at = timezone.now()
    certificate = DeletionCertificate.objects.for_tenant(tenant).create(
        subject=subject,
        scope=DeletionCertificate.Scope.SUBJECT,
        trigger=trigger,
        reason=reason,
        requested_by=acting_user(actor),
        started_at=started_at,
        # The key goes below, in this transaction: the certificate never commits without it gone.
        key_id=subject_key.key_id if subject_key is not None else None,
        key_destroyed_at=started_at if subject_key is not None else None,
    )
    overtaken = pending_requests(subject) if pending is None else pending
    facts = [
        Fact(
            action="erasure.started",
            actor=actor,
            target=certificate,
            payload={"subject_id": subject.pk, "trigger": trigger.value, "scope": certificate.scope},
        ),
        *_close_overtaken_requests(overtaken, certificate, actor),
    ]
    if subject_key is not None:
        subject_key.delete()
        facts.append(
            Fact(
                action="subject_key.destroyed",
                actor=actor,
                target_type="consent.subjectkey",
                target_id=str(certificate.key_id),
                payload={"subject_id": subject.pk, "certificate_id": certificate.pk},
            )
        )
        transaction.on_commit(checkpoint_sqlite_wal, robust=True)
    record_each(tenant, facts)  # in this order, under one lock of the chain head
    if enqueue:
        transaction.on_commit(lambda: _enqueue_completion(certificate.pk), robust=True)
    return certificate


def erase_subject(*, actor: Actor, subject: Subject, reason: str) -> DeletionCertificate | None:
    """Erasure on request (GDPR Art. 17) by a tenant admin; consent records stay as the history."""
    require_perm(actor, subject.tenant, "consent.erase_subject", subject)
    if not reason.strip():
        raise ConsentActionError("Give the reason for the erasure (for example the request it answers).")
    with transaction.atomic():
        locked = locked_subject(subject)
        return begin_erasure(locked, trigger=ErasureTrigger.ADMIN, actor=actor, reason=reason.strip())


def _call_hooks(subject: Subject) -> tuple[list[str], list[str], list[str]]:
    """Jobs stop first (none can write a new file meanwhile), then outputs are withdrawn, rows forgotten."""
    acted: dict[str, list[str]] = {"cancel_jobs": [], "withdraw_outputs": [], "forget_rows": []}
    for field, done in acted.items():
        for hook in registered_hooks():
            call = getattr(hook, field)
            if call is not None:
                done.extend(f"{hook.name}:{ident}" for ident in call(subject))
    return acted["cancel_jobs"], acted["withdraw_outputs"], acted["forget_rows"]


def complete_erasure(certificate_id: int) -> DeletionCertificate | None:
    """Cancel jobs, withdraw outputs, delete files and rows, sweep the storage prefix, close the certificate.

    One transaction under a lock on the certificate: a crash rolls the rows back
    while the deleted files stay deleted, so a rerun redoes the rows, skips the
    missing files and counts each file once. Safe to call any number of times.
    """
    with transaction.atomic():
        certificate = (
            # Lock the certificate and the subject, never the tenant row: audit.record takes that one
            # later, and every writer takes subject before tenant, so no two of them can deadlock.
            DeletionCertificate.dangerously_unscoped.select_for_update(of=("self", "subject"))
            .select_related("tenant", "subject")
            .filter(pk=certificate_id)
            .first()
        )
        if certificate is None or certificate.completed_at is not None:
            return certificate
        subject = certificate.subject
        tenant = subject.tenant = certificate.tenant  # the same row: the hooks need not read it again
        storage = private_storage()
        live_key = SubjectKey.objects.for_tenant(tenant).filter(subject=subject).first()
        if certificate.scope == DeletionCertificate.Scope.SUBJECT:
            cancelled, withdrawn, forgotten = _call_hooks(subject)
            doomed = subject.assets.all()
            if live_key is not None:
                # A new consent after the erasure began has its own key: its files are not this erasure's.
                doomed = doomed.exclude(key_id=live_key.key_id)
        else:
            cancelled, withdrawn, forgotten = [], [], []
            doomed = subject.assets.filter(pk__in=certificate.planned_asset_ids)
        counts: Counter[str] = Counter()
        file_ids: list[int] = []
        for asset_id, kind, storage_name in doomed.order_by("id").values_list("pk", "kind", "storage_name"):
            storage.delete(storage_name)
            counts[kind] += 1
            file_ids.append(asset_id)
            crash_point("erasure.file_deleted")
        delete_file_rows(tenant, file_ids)
        strays = 0
        if certificate.scope == DeletionCertificate.Scope.SUBJECT:
            keep = vault.key_folder(tenant.pk, subject.pk, live_key.key_id) + "/" if live_key else None
            for name in walk(storage, subject_prefix(tenant.pk, subject.pk)):
                if keep is None or not name.startswith(keep):
                    storage.delete(name)
                    strays += 1
        certificate.destroyed_counts = dict(sorted(counts.items()))
        certificate.file_ids = file_ids
        certificate.stray_files_removed = strays
        certificate.cancelled_jobs = cancelled
        certificate.withdrawn_outputs = withdrawn
        certificate.completed_at = timezone.now()
        certificate.save()
        audit(
            tenant=tenant,
            action="erasure.completed",
            target=certificate,
            payload={
                "subject_id": subject.pk,
                "trigger": certificate.trigger,
                "files_by_kind": certificate.destroyed_counts,
                "file_ids": file_ids,
                "stray_files_removed": strays,
                "cancelled_jobs": cancelled,
                "withdrawn_outputs": withdrawn,
                "forgotten_rows": forgotten,
                "key_destroyed": certificate.key_destroyed_at is not None,
            },
        )
    return certificate
