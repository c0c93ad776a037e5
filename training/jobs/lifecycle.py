"""Every state change of a job: queue, start, progress, finish, cancel. The jobs' only write path.

Transitions are conditional updates (`filter(pk=..., status__in=...).update(...)`),
never read-modify-write, so two parties racing for one job (a worker finishing
while a user cancels, a redelivered message while the first run still lives)
cannot both win: the loser's update matches no row and it backs off. Every
change commits first and is published to the job's socket group after, so a
client that connects late starts from the truth.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.actions import record as audit
from consent import actions as consent_actions
from consent.actions.common import acting_user
from consent.models import Subject
from tenancy.permissions import UserLike, require_perm
from tenancy.realtime import object_group, publish
from training.models import ACTIVE_STATUSES, TERMINAL_STATUSES, Job, JobStatus

logger = logging.getLogger(__name__)

MAX_CANCEL_REASON_CHARS = 200
MAX_ERROR_CHARS = 2000


class JobError(Exception):
    """The job cannot be done as asked; `message` says why in words a person can act on."""

    def __init__(self, message: str, *, code: str = "job_error") -> None:
        super().__init__(message)
        self.message = message[:MAX_ERROR_CHARS]
        self.code = code


class JobStopped(Exception):  # noqa: N818 (a signal to unwind, not an error)
    """Raised inside a running job when it must stop between steps (cancelled, or consent withdrawn)."""

    def __init__(self, reason: str, *, code: str = "cancelled") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class StartOutcome(StrEnum):
    RUN = "run"  # this worker runs it now
    DONE = "done"  # finished, cancelled or superseded: nothing to do (a duplicate message)
    BUSY = "busy"  # another run looks alive: ask again once its heartbeat would be stale


def publish_job(job_id: int) -> None:
    """Send the job's stored snapshot to its socket group (after the state it reports is committed)."""
    from training.jobs.progress import snapshot

    job = Job.dangerously_unscoped.filter(pk=job_id).first()
    if job is None:
        return
    try:
        publish(object_group(job), snapshot(job))
    except Exception:  # a dead channel layer must never fail the job whose state is already saved
        logger.warning("could not publish the progress of job %s", job_id, exc_info=True)


def _publish_on_commit(job_id: int) -> None:
    transaction.on_commit(lambda: publish_job(job_id), robust=True)


def _dispatch_on_commit() -> None:
    from training.jobs.dispatch import dispatch_jobs

    transaction.on_commit(dispatch_jobs, robust=True)


# --- queueing (the request) ----------------------------------------------------------------------
def queue_job(*, actor: UserLike | None, job: Job, add_permission: str) -> Job:
    """Save a new job of any kind (an unsaved child instance) after checking permission and consent.

    The consent gate runs here (when queued), again when the worker starts it and
    before every file it writes (training.jobs.runner). The kind's own action
    validates its parameters first and calls this inside its transaction.
    """
    from training.jobs.kinds import job_kind

    kind = job_kind(job.kind)
    require_perm(actor, job.tenant, add_permission)
    waiting = Job.objects.for_tenant(job.tenant).filter(status=JobStatus.QUEUED).count()
    if waiting >= settings.LIKENESS_TENANT_MAX_QUEUED_JOBS:
        raise JobError(
            f"{waiting} jobs of this brand are already waiting, the most allowed: wait for some to start or "
            "cancel some first.",
            code="queue_full",
        )
    require_perm(actor, job.tenant, "consent.view_subject", job.subject)
    job.consent_record = consent_actions.require(job.subject, kind.purpose)
    job.status = JobStatus.QUEUED
    job.created_at = timezone.now()
    job.requested_by = acting_user(actor)
    job.save()
    audit(
        tenant=job.tenant,
        action="job.queued",
        actor=actor,
        # The base row, as every later entry of the job names it: one trail per job, whatever its kind.
        target_type=Job._meta.label_lower,
        target_id=job.pk,
        payload={
            "kind": job.kind,
            "subject_id": job.subject_id,
            "consent_record_id": job.consent_record.pk,
        },
    )
    _dispatch_on_commit()
    return job


# --- the worker's side ---------------------------------------------------------------------------
def _gave_up(job: Job, now: datetime) -> bool:
    """Under the job's lock: fail it if its workers died LIKENESS_JOB_MAX_ATTEMPTS times already (an
    out-of-memory job would otherwise kill worker after worker); True when it did."""
    if job.attempts < settings.LIKENESS_JOB_MAX_ATTEMPTS:
        return False
    message = (
        f"The worker running this job stopped {job.attempts} times before it finished (out of memory, or "
        "the machine restarted). Try a smaller preset, or ask the operator to check the GPU workers."
    )
    _finish_locked(job, JobStatus.FAILED, code="worker_lost", message=message, now=now)
    return True


def heartbeat_is_stale(job: Job, now: datetime) -> bool:
    limit = timedelta(seconds=settings.LIKENESS_JOB_STALE_SECONDS)
    return job.heartbeat_at is None or now - job.heartbeat_at > limit


def mark_started(job_id: int, dispatch_token: str, *, host: str) -> tuple[StartOutcome, Job | None]:
    """Claim the job for this worker, or say why not.

    A message whose token is not the job's current dispatch token is stale (the
    reaper queued the job again since): done. A running job whose heartbeat is
    fresh belongs to a live run: busy. A running job whose heartbeat went stale
    lost its worker: this run takes over (resuming where the kind can), up to
    LIKENESS_JOB_MAX_ATTEMPTS starts in all, then it fails with the reason.
    """
    now = timezone.now()
    with transaction.atomic():
        job = Job.dangerously_unscoped.select_for_update().select_related("tenant").filter(pk=job_id).first()
        if job is None or job.status in TERMINAL_STATUSES or str(job.dispatch_token) != str(dispatch_token):
            return StartOutcome.DONE, None
        if job.status == JobStatus.RUNNING and not heartbeat_is_stale(job, now):
            return StartOutcome.BUSY, job
        if _gave_up(job, now):
            return StartOutcome.DONE, None
        resumed = job.status == JobStatus.RUNNING
        Job.dangerously_unscoped.filter(pk=job.pk).update(
            status=JobStatus.RUNNING,
            started_at=job.started_at or now,
            heartbeat_at=now,
            attempts=F("attempts") + 1,
            worker_host=host[:255],
        )
        job.refresh_from_db()
        audit(
            tenant=job.tenant,
            action="job.resumed" if resumed else "job.started",
            target=job,
            payload={
                "kind": job.kind,
                "subject_id": job.subject_id,
                "attempt": job.attempts,
                "worker_host": job.worker_host,
            },
        )
    _publish_on_commit(job.pk)
    return StartOutcome.RUN, job


def beat(job_id: int, *, peak_memory_bytes: int | None = None) -> None:
    """The worker is alive (and how much memory it peaked at so far)."""
    fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
    if peak_memory_bytes is not None:
        fields["peak_memory_bytes"] = peak_memory_bytes
    Job.dangerously_unscoped.filter(pk=job_id, status=JobStatus.RUNNING).update(**fields)


def save_progress(job_id: int, fields: dict[str, Any]) -> bool:
    """Store a progress snapshot of a running job and publish it; False when the job is no longer running."""
    with transaction.atomic():
        updated = Job.dangerously_unscoped.filter(pk=job_id, status=JobStatus.RUNNING).update(
            heartbeat_at=timezone.now(), **fields
        )
        if updated:
            _publish_on_commit(job_id)
    return bool(updated)


def stop_reason(job_id: int) -> str | None:
    """Why a running job must stop now (a cancel request, or it is no longer running), if it must."""
    row = (
        Job.dangerously_unscoped.filter(pk=job_id)
        .values("status", "cancel_requested_at", "cancel_reason")
        .first()
    )
    if row is None or row["status"] != JobStatus.RUNNING:
        return "The job is no longer running."
    if row["cancel_requested_at"] is not None:
        return row["cancel_reason"] or "Cancelled."
    return None


def _finish_locked(job: Job, status: JobStatus, *, code: str, message: str, now: datetime) -> None:
    """Under the job's row lock: the terminal state, metering and the audit entry."""
    wall = (now - job.started_at).total_seconds() if job.started_at else 0.0
    Job.dangerously_unscoped.filter(pk=job.pk).update(
        status=status,
        finished_at=now,
        eta_seconds=None,
        error_code=code[:64],
        error_message=message[:MAX_ERROR_CHARS],
        wall_seconds=wall,
        # One job holds one device for its whole run: its device time is its wall time.
        device_seconds=wall if job.started_at else 0.0,
    )
    audit(
        tenant=job.tenant,
        action=f"job.{status.value}",
        target=job,
        payload={
            "kind": job.kind,
            "subject_id": job.subject_id,
            "error_code": code,
            "wall_seconds": round(wall, 3),
            "steps_done": job.steps_done,
        },
    )
    _publish_on_commit(job.pk)
    _dispatch_on_commit()


def finish(
    job_id: int,
    status: JobStatus,
    *,
    code: str = "",
    message: str = "",
    device: str | None = None,
    peak_memory_bytes: int | None = None,
) -> bool:
    """End a running job; False (and nothing changes) when it was not running any more."""
    now = timezone.now()
    with transaction.atomic():
        job = Job.dangerously_unscoped.select_for_update().select_related("tenant").filter(pk=job_id).first()
        if job is None or job.status != JobStatus.RUNNING:
            return False
        extra: dict[str, Any] = {}
        if device is not None:
            extra["device"] = device[:128]
        if peak_memory_bytes is not None:
            extra["peak_memory_bytes"] = max(peak_memory_bytes, job.peak_memory_bytes)
        if extra:
            Job.dangerously_unscoped.filter(pk=job.pk).update(**extra)
        _finish_locked(job, status, code=code, message=message, now=now)
    return True


# --- cancellation ------------------------------------------------------------------------------------
def _cancel_locked(job: Job, *, actor: UserLike | None, reason: str, now: datetime) -> None:
    if job.status == JobStatus.QUEUED:
        # Never started (or handed to the broker but not begun: the worker will find it cancelled).
        _finish_locked(job, JobStatus.CANCELLED, code="cancelled", message=reason, now=now)
    elif job.cancel_requested_at is None:
        Job.dangerously_unscoped.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            cancel_requested_at=now,
            cancel_requested_by=acting_user(actor),
            cancel_reason=reason[:MAX_CANCEL_REASON_CHARS],
        )
        audit(
            tenant=job.tenant,
            action="job.cancel_requested",
            actor=actor,
            target=job,
            payload={"kind": job.kind, "subject_id": job.subject_id},
        )
        _publish_on_commit(job.pk)


def cancel_job(*, actor: UserLike | None, job: Job, reason: str = "") -> Job:
    """Cancel a queued job at once, or ask a running one to stop after its current step."""
    require_perm(actor, job.tenant, "training.cancel_job", job)
    text = reason.strip()[:MAX_CANCEL_REASON_CHARS] or "Cancelled by a member of the brand."
    with transaction.atomic():
        locked = Job.dangerously_unscoped.select_for_update().select_related("tenant").get(pk=job.pk)
        if locked.status in ACTIVE_STATUSES:
            _cancel_locked(locked, actor=actor, reason=text, now=timezone.now())
    job.refresh_from_db()
    return job


def cancel_jobs_of_subject(subject: Subject) -> list[int]:
    """The erasure hook: every active job of the subject stops (queued at once, running within a step)."""
    now = timezone.now()
    ids: list[int] = []
    reason = "Stopped: the subject's consent was withdrawn and their data is being erased."
    active = Job.objects.for_tenant(subject.tenant).filter(subject=subject, status__in=ACTIVE_STATUSES)
    if not active.exists():  # most erased subjects have none: spare the locking read's cost
        return ids
    for job in active.select_for_update().select_related("tenant").order_by("id"):
        _cancel_locked(job, actor=None, reason=reason, now=now)
        ids.append(job.pk)
    return ids


# --- the fair queue's side ------------------------------------------------------------------------------
def mark_dispatched(job_ids: list[int], now: datetime) -> dict[int, str]:
    """Give each job a fresh dispatch token (the dispatcher holds its lock): job id -> token."""
    tokens = {}
    for job_id in job_ids:
        token = uuid.uuid4()
        Job.dangerously_unscoped.filter(pk=job_id, status=JobStatus.QUEUED).update(
            dispatched_at=now, dispatch_token=token
        )
        tokens[job_id] = str(token)
    return tokens


def requeue_or_fail_stale(now: datetime) -> list[int]:
    """The reaper: jobs whose worker stopped beating are queued again, or fail after too many starts.

    Also jobs handed to the broker long ago that no worker ever started (a lost
    message): they are handed over again.
    """
    stale_before = now - timedelta(seconds=settings.LIKENESS_JOB_STALE_SECONDS)
    touched = []
    with transaction.atomic():
        stale = (
            Job.dangerously_unscoped.select_for_update(skip_locked=True)
            .select_related("tenant")
            .filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before)
            .order_by("id")
        )
        for job in stale:
            touched.append(job.pk)
            if _gave_up(job, now):
                continue
            Job.dangerously_unscoped.filter(pk=job.pk, status=JobStatus.RUNNING).update(
                status=JobStatus.QUEUED, dispatched_at=None, dispatch_token=None, heartbeat_at=None
            )
            audit(
                tenant=job.tenant,
                action="job.requeued",
                target=job,
                payload={
                    "kind": job.kind,
                    "subject_id": job.subject_id,
                    "attempts": job.attempts,
                    "reason": "worker stopped responding",
                },
            )
            _publish_on_commit(job.pk)
        lost = Job.dangerously_unscoped.filter(
            status=JobStatus.QUEUED, dispatched_at__lt=stale_before
        ).values_list("pk", flat=True)
        lost_ids = list(lost)
        if lost_ids:
            Job.dangerously_unscoped.filter(pk__in=lost_ids, status=JobStatus.QUEUED).update(
                dispatched_at=None, dispatch_token=None
            )
            touched.extend(lost_ids)
        if touched:
            _dispatch_on_commit()
    return touched
