"""The retention and expiry sweep across tenants (the enforce_retention command and beat task)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.actions import record as audit
from consent.actions.erasure import begin_erasure, checkpoint_sqlite_wal, complete_erasure
from consent.actions.gate import records_in_force, revoked_as_of, subject_records
from consent.actions.retention import subject_retain_until
from consent.models import (
    DeletionCertificate,
    ErasureTrigger,
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


def _ended_by_revocation(subject: Subject, at: datetime) -> bool:
    records = subject_records(subject)
    return bool(records) and all(revoked_as_of(record, at) is not None for record in records)


def _describe(certificate: DeletionCertificate) -> str:
    key = "key destroyed" if certificate.key_destroyed_at else "key kept"
    return (
        f"subject {certificate.subject_id} (tenant {certificate.tenant_id}): {certificate.trigger}, "
        f"{certificate.files_destroyed} files {dict(certificate.destroyed_counts)}, {key}, "
        f"certificate {certificate.public_id}"
    )


def _open_sweep_erasure(
    subject: Subject, now: datetime, dry_run: bool, say: Callable[[str], None]
) -> DeletionCertificate | None:
    """Under the subject lock: decide what of this subject is due at `now` and open its certificate."""
    assets = subject.assets.all()
    if (
        not SubjectKey.objects.for_tenant(subject.tenant).filter(subject=subject).exists()
        and not assets.exists()
    ):
        return None
    where = f"subject {subject.pk} (tenant {subject.tenant.slug})"
    trigger: ErasureTrigger | None = None
    if not records_in_force(subject, now):
        trigger = ErasureTrigger.REVOCATION if _ended_by_revocation(subject, now) else ErasureTrigger.EXPIRY
    elif subject_retain_until(subject, now) <= now:
        trigger = ErasureTrigger.RETENTION
    if trigger is not None:
        if dry_run:
            say(f"would erase {where}: {trigger.value}, {assets.count()} files, key destroyed")
            return None
        return begin_erasure(subject, trigger=trigger, actor=None, reason="", enqueue=False)
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


def enforce_retention(
    *, now: datetime | None = None, dry_run: bool = False, echo: Callable[[str], None] = logger.info
) -> SweepReport:
    """Erase everything due at `now`, across tenants (a system sweep: the command and the beat task).

    Order: finish erasures a crash interrupted; then subjects holding data with
    no consent in force (expiry; revocations whose erasure never ran); then data
    past its retain_until. Each subject is decided and erased under its own lock
    and transactions, so a crash anywhere loses nothing and the next run finishes.
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
    holders = (
        Subject.dangerously_unscoped.filter(Q(data_key__isnull=False) | Q(assets__isnull=False))
        .distinct()
        .order_by("tenant_id", "id")
        .values_list("pk", flat=True)
    )
    for subject_id in list(holders):
        with transaction.atomic():
            subject = (
                Subject.dangerously_unscoped.select_for_update(of=("self",))
                .select_related("tenant", "retention_schedule")
                .get(pk=subject_id)
            )
            certificate = _open_sweep_erasure(subject, moment, dry_run, say)
        if certificate is None:
            continue
        done = complete_erasure(certificate.pk)
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
