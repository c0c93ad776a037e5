"""The retention and expiry sweep across tenants (the enforce_retention command and beat task)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from audit.actions import record as audit
from consent.actions.erasure import begin_erasure, checkpoint_sqlite_wal, complete_erasure, pending_requests
from consent.actions.erasure_requests import (
    erase_at_deadline,
    format_moment,
    supersede_revocation_requests,
)
from consent.actions.gate import in_force, in_period, records_in_force, revoked_as_of, subject_records
from consent.actions.retention import subject_retain_until
from consent.models import (
    Asset,
    ConsentRecord,
    ConsentRevocation,
    DeletionCertificate,
    ErasureRequest,
    ErasureTrigger,
    RetentionSchedule,
    Subject,
    SubjectKey,
)

logger = logging.getLogger(__name__)


@dataclass
class SweepReport:
    lines: list[str] = field(default_factory=list)
    erased_subjects: int = 0
    erased_files: int = 0
    resumed: int = 0


def _ended_by_revocation(records: list[ConsentRecord], at: datetime) -> bool:
    return bool(records) and all(revoked_as_of(record, at) is not None for record in records)


def _describe(certificate: DeletionCertificate) -> str:
    key = "key destroyed" if certificate.key_destroyed_at else "key kept"
    return (
        f"subject {certificate.subject_id} (tenant {certificate.tenant_id}): {certificate.trigger}, "
        f"{certificate.files_destroyed} files {dict(certificate.destroyed_counts)}, {key}, "
        f"certificate {certificate.public_id}"
    )


def _locked(subject_id: int, dry_run: bool = False) -> Subject:
    """The subject under its row lock, across tenants (a system sweep), in the caller's transaction.

    A dry run changes nothing, so it reads without the lock: it never makes a signing, an upload
    or a real sweep wait.
    """
    subjects = Subject.dangerously_unscoped.select_related("tenant", "retention_schedule")
    if not dry_run:
        subjects = subjects.select_for_update(of=("self",))
    return subjects.get(pk=subject_id)


def due_candidates(now: datetime) -> QuerySet[Subject]:
    """Subjects holding data of whom something may be due at `now`, chosen by the database.

    A superset of what `_open_sweep_erasure` decides (which still decides, exactly, under the
    subject's lock): no consent in force (expiry, revocation, a request's deadline), a file past
    its own retain_until, the interaction clock (years counted as 365 days, never later than the
    calendar's), or the purpose-satisfied clock. Everyone else is never read, so a sweep's cost
    follows what is due, not how many subjects the platform holds. The clocks' lengths differ per
    schedule; the few distinct values become one date comparison each (SQLite cannot multiply a
    duration in SQL).
    """
    in_force = ConsentRecord.objects.filter(subject=OuterRef("pk"), valid_from__lte=now).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now),
        ~Exists(ConsentRevocation.objects.filter(record=OuterRef("pk"), revoked_at__lte=now)),
    )
    due = ~Exists(in_force) | Exists(Asset.objects.filter(subject=OuterRef("pk"), retain_until__lte=now))
    schedules = RetentionSchedule.dangerously_unscoped.order_by()
    for years in schedules.values_list("years_after_last_interaction", flat=True).distinct():
        due |= Q(
            retention_schedule__years_after_last_interaction=years,
            last_interaction_at__lte=now - timedelta(days=365 * years),
        )
    for days in schedules.values_list("days_after_purpose_satisfied", flat=True).distinct():
        due |= Q(
            retention_schedule__days_after_purpose_satisfied=days,
            purpose_satisfied_at__lte=now - timedelta(days=days),
        )
    holds = Exists(SubjectKey.objects.filter(subject=OuterRef("pk"))) | Exists(
        Asset.objects.filter(subject=OuterRef("pk"))
    )
    return Subject.dangerously_unscoped.filter(holds).filter(due)


def _held_for_confirmation(
    subject: Subject, request: ErasureRequest, now: datetime, records: list[ConsentRecord]
) -> bool:
    """Whether a pending revocation request, within its deadline, alone keeps the subject's data at `now`.

    It holds back only what its staff-recorded revocation ended: if the revoked
    consent would have expired by now anyway, or the schedule's retention date
    passed, the erasure is due whoever confirms it.
    """
    assert request.revocation is not None
    return in_period(request.revocation.record, now) and subject_retain_until(subject, now, records) > now


def _review_requests(now: datetime, dry_run: bool, say: Callable[[str], None]) -> None:
    """Close revocation requests that a consent in force superseded; say which requests still wait."""
    pending = ErasureRequest.dangerously_unscoped.filter(state=ErasureRequest.State.PENDING)
    for request_id, subject_id in list(pending.order_by("id").values_list("pk", "subject_id")):
        with transaction.atomic():
            subject = _locked(subject_id, dry_run)
            request = ErasureRequest.objects.for_tenant(subject.tenant).get(pk=request_id)
            if not request.is_pending:
                continue
            where = f"erasure request #{request.pk} of subject {subject.pk} (tenant {subject.tenant.slug})"
            label = request.get_trigger_display().lower()
            if request.trigger == ErasureRequest.Trigger.REVOCATION and records_in_force(subject, now):
                if not dry_run:
                    supersede_revocation_requests(subject, now)
                say(f"{'would close' if dry_run else 'closed'} {where}: a consent is in force again")
            elif request.deadline > now:
                say(f"{where}: {label}, awaits a tenant admin until {format_moment(request.deadline)}")
            elif request.trigger == ErasureRequest.Trigger.PURPOSE_SATISFIED:
                overdue = format_moment(request.deadline)
                say(f"{where}: {label}, awaits a tenant admin, overdue since {overdue}")


def _open_sweep_erasure(
    subject: Subject, now: datetime, dry_run: bool, say: Callable[[str], None]
) -> DeletionCertificate | None:
    """Under the subject lock: decide what of this subject is due at `now` and open its certificate.

    The subject's records and pending requests are read once for every decision. Whether it still
    holds data is not asked again: the candidates were chosen holding some, and begin_erasure checks
    again under the lock.
    """
    records, pending = subject_records(subject), pending_requests(subject)
    assets = subject.assets.all()
    where = f"subject {subject.pk} (tenant {subject.tenant.slug})"
    trigger: ErasureTrigger | None = None
    if not any(in_force(record, now) for record in records):
        request = next((r for r in pending if r.trigger == ErasureRequest.Trigger.REVOCATION), None)
        if request is None:
            ended_by_revocation = _ended_by_revocation(records, now)
            trigger = ErasureTrigger.REVOCATION if ended_by_revocation else ErasureTrigger.EXPIRY
        elif request.deadline <= now:
            if dry_run:
                say(f"would erase {where}: {request} passed its deadline unconfirmed, {assets.count()} files")
                return None
            return erase_at_deadline(subject, request)
        elif not _held_for_confirmation(subject, request, now, records):  # it ended anyway: the reason
            trigger = (
                ErasureTrigger.RETENTION
                if subject_retain_until(subject, now, records) <= now
                else ErasureTrigger.EXPIRY
            )
        # Otherwise the subject waits for an admin or the deadline; files whose own retention ended go below.
    elif subject_retain_until(subject, now, records) <= now:
        trigger = ErasureTrigger.RETENTION
    if trigger is not None:
        if dry_run:
            say(f"would erase {where}: {trigger.value}, {assets.count()} files, key destroyed")
            return None
        return begin_erasure(subject, trigger=trigger, actor=None, reason="", enqueue=False, pending=pending)
    due = list(assets.filter(retain_until__lte=now).order_by("id").values_list("pk", flat=True))
    if not due:
        return None
    if dry_run:
        say(f"would erase {len(due)} files of {where} whose own retention ended")
        return None
    certificate = DeletionCertificate.objects.for_tenant(subject.tenant).create(
        subject=subject,
        scope=DeletionCertificate.Scope.ASSETS,
        trigger=ErasureTrigger.RETENTION,
        started_at=timezone.now(),
        planned_asset_ids=due,
    )
    audit(
        tenant=subject.tenant,
        action="erasure.started",
        target=certificate,
        payload={"subject_id": subject.pk, "trigger": "retention", "scope": "assets", "asset_ids": due},
    )
    return certificate


def _sweep_subject(
    subject_id: int, now: datetime, dry_run: bool
) -> tuple[list[str], DeletionCertificate | None]:
    """One candidate: decided and its certificate opened under its lock, then erased; what it says."""
    lines: list[str] = []
    with transaction.atomic():
        certificate = _open_sweep_erasure(_locked(subject_id, dry_run), now, dry_run, lines.append)
    return lines, (complete_erasure(certificate.pk) if certificate is not None else None)


def _sweep_subject_on_own_connection(
    subject_id: int, now: datetime, dry_run: bool
) -> tuple[list[str], DeletionCertificate | None]:
    try:
        return _sweep_subject(subject_id, now, dry_run)
    finally:
        connections.close_all()  # this thread's: back to the pool


def _sweep_subjects(
    subject_ids: list[int], now: datetime, dry_run: bool
) -> Iterator[tuple[list[str], DeletionCertificate | None]]:
    """Each candidate's outcome, in the order given; on PostgreSQL several at once.

    Subjects are independent: each has its own lock and transactions, and the tenant's audit chain
    head is held only from its append to its commit. So while one waits for the database another
    runs its Python, on its own connection (LIKENESS_SWEEP_CONNECTIONS): issue 14's 1,000 due
    subjects in under 30 s. Inside a caller's transaction (a test, a shell) they run in it, one at a
    time: another connection would not see its rows. A failure stops the sweep as it always did:
    subjects not started are left for the next run.
    """
    parallel = min(settings.LIKENESS_SWEEP_CONNECTIONS, len(subject_ids))
    if parallel < 2 or connection.vendor != "postgresql" or connection.in_atomic_block:
        yield from (_sweep_subject(subject_id, now, dry_run) for subject_id in subject_ids)
        return
    pool = ThreadPoolExecutor(parallel, thread_name_prefix="retention-sweep")
    try:
        yield from pool.map(partial(_sweep_subject_on_own_connection, now=now, dry_run=dry_run), subject_ids)
    finally:
        pool.shutdown(cancel_futures=True)


def enforce_retention(
    *, now: datetime | None = None, dry_run: bool = False, echo: Callable[[str], None] = logger.info
) -> SweepReport:
    """Erase everything due at `now`, across tenants (a system sweep: the command and the beat task).

    Order: finish erasures a crash interrupted; review pending erasure requests
    (a consent in force again supersedes a revocation's); then subjects holding
    data with no consent in force (expiry; revocations whose erasure never ran;
    a staff-recorded revocation once its request's deadline passed, never before
    unless the consent would have ended anyway); then data past its retain_until.
    Each subject is decided and erased under its own lock and transactions, so a
    crash anywhere loses nothing and the next run finishes.
    """
    moment = now or timezone.now()
    report = SweepReport()

    def say(line: str) -> None:
        report.lines.append(line)
        echo(line)

    unfinished = DeletionCertificate.dangerously_unscoped.filter(completed_at__isnull=True).order_by("id")
    for certificate_id in list(unfinished.values_list("pk", flat=True)):
        if dry_run:
            say(f"would finish interrupted erasure (certificate #{certificate_id})")
            continue
        done = complete_erasure(certificate_id)
        if done is not None:
            report.resumed += 1
            report.erased_subjects += int(done.scope == DeletionCertificate.Scope.SUBJECT)
            report.erased_files += done.files_destroyed
            say(f"finished interrupted erasure of {_describe(done)}")
    _review_requests(moment, dry_run, say)
    candidates = due_candidates(moment).order_by("tenant_id", "id").values_list("pk", flat=True)
    for lines, done in _sweep_subjects(list(candidates), moment, dry_run):
        for line in lines:
            say(line)
        if done is not None:
            report.erased_subjects += int(done.scope == DeletionCertificate.Scope.SUBJECT)
            report.erased_files += done.files_destroyed
            say(f"erased {_describe(done)}")
    if not dry_run:
        checkpoint_sqlite_wal()  # finishes a checkpoint that a reader blocked after an erasure
    say(
        f"{'dry run: ' if dry_run else ''}{report.erased_subjects} subjects erased, "
        f"{report.erased_files} files destroyed, {report.resumed} interrupted erasures finished"
    )
    return report
