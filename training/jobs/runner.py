"""Running one job inside a GPU worker: claim it, run its kind, end it, whatever happens.

`run_job()` is the whole life of a run (NetBox's JobRunner.handle: no kind can
forget to record a failure). The kind's `execute(specific_job, context)` gets a
JobContext that is its only way to touch the world: it reports progress (stored
at a throttled rate, then published), learns between steps whether it must stop
(a cancel request, or consent withdrawn for its purpose), and stores every file
through the consent gate. A monitor thread beats for the job while it runs, so
a long step (a model load) never looks like a dead worker, and samples the
process's memory for the meter.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection

from consent import actions as consent_actions
from consent.models import Asset, AssetKind
from training.jobs.kinds import JobKind, job_kind
from training.jobs.lifecycle import (
    JobError,
    JobStopped,
    StartOutcome,
    beat,
    finish,
    mark_started,
    save_progress,
    stop_reason,
)
from training.jobs.metering import MemorySampler
from training.jobs.progress import thin_history
from training.models import Job, JobPreview, JobStatus

logger = logging.getLogger(__name__)

# The key of the total loss in a losses dict, for the loss curve (the kinds' own keys stay as they are).
TOTAL_LOSS_KEYS = ("total", "loss")


class JobContext:
    """What a running job may do: report, check whether to stop, store files under consent."""

    def __init__(self, job: Job, kind: JobKind) -> None:
        self.job = job
        self.kind = kind
        self.specific = kind.model.dangerously_unscoped.select_related("tenant", "subject").get(pk=job.pk)
        self.device = ""
        self.steps_done = 0
        self.scratch = Path(settings.LIKENESS_SCRATCH_ROOT) / f"job-{job.pk}"
        # A crashed earlier attempt of this job may have left files: they go before this one starts.
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True, mode=0o700)
        self._history: list[list[float]] = list(job.loss_history)
        self._last_write = 0.0
        self._last_check = time.monotonic()
        self._last_phase = job.phase

    # --- stopping ---------------------------------------------------------------------------------
    def check(self) -> None:
        """Raise JobStopped if the job must stop now: cancelled, or its consent no longer covers it."""
        reason = stop_reason(self.job.pk)
        if reason is not None:
            raise JobStopped(reason)
        try:
            consent_actions.require(self.job.subject, self.kind.purpose)
        except consent_actions.ConsentRequiredError as error:
            raise JobStopped(error.message, code=f"consent_{error.reason.value}") from None
        self._last_check = time.monotonic()

    # --- progress ---------------------------------------------------------------------------------
    def report(
        self,
        *,
        step: int,
        total: int,
        phase: str = "",
        losses: dict[str, float] | None = None,
        learning_rates: dict[str, float] | None = None,
        eta_seconds: float | None = None,
        notices: list[str] | None = None,
        preview: Any = None,
    ) -> None:
        """Record where the job is; stored and published at most every LIKENESS_JOB_PROGRESS_SECONDS
        (and at once on a phase change, the last step or a preview). Raises JobStopped between
        steps when the job must stop."""
        now = time.monotonic()
        self.steps_done = max(self.steps_done, step)
        total_loss = next((losses[key] for key in TOTAL_LOSS_KEYS if losses and key in losses), None)
        if total_loss is not None:
            self._history = thin_history(self._history, [step, round(float(total_loss), 6)])
        if preview is not None:
            self._store_preview(step, preview)
        due = (
            now - self._last_write >= settings.LIKENESS_JOB_PROGRESS_SECONDS
            or step >= total
            or phase != self._last_phase
            or preview is not None
        )
        if due:
            fields: dict[str, Any] = {
                "phase": phase[:32],
                "step": step,
                "total_steps": total,
                "eta_seconds": eta_seconds,
                "loss_history": self._history,
                "steps_done": self.steps_done,
            }
            if losses is not None:
                fields["losses"] = {key: round(float(value), 6) for key, value in losses.items()}
            if learning_rates is not None:
                fields["learning_rates"] = {key: float(value) for key, value in learning_rates.items()}
            if notices:
                fields["notices"] = [str(notice)[:300] for notice in notices[:20]]
            if self.device:
                fields["device"] = self.device[:128]
            save_progress(self.job.pk, fields)
            self._last_write = now
            self._last_phase = phase
        if now - self._last_check >= settings.LIKENESS_JOB_PROGRESS_SECONDS:
            self.check()

    def _store_preview(self, step: int, image: Any) -> None:
        import io

        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        asset = self.store_file(
            kind=AssetKind.PREVIEW,
            data=buffer.getvalue(),
            content_type="image/png",
            extension="png",
            label=f"preview of job {self.job.pk} at step {step}",
        )
        JobPreview.objects.for_tenant(self.job.tenant).create(
            job=self.job, step=step, asset=asset, created_at=asset.created_at
        )

    # --- files --------------------------------------------------------------------------------------
    def store_file(
        self,
        *,
        kind: AssetKind | str,
        data: bytes,
        content_type: str,
        extension: str,
        label: str = "",
        source: Asset | None = None,
        retain_for_days: int | None = None,
    ) -> Asset:
        """Store a file of the subject, encrypted with their key, only while consent covers this job."""
        self.check()
        return consent_actions.store_subject_file(
            subject=self.job.subject,
            kind=kind,
            data=data,
            content_type=content_type,
            extension=extension,
            label=label,
            source=source,
            retain_for_days=retain_for_days,
        )

    def cleanup(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


class _Monitor(threading.Thread):
    """Beats for the job every LIKENESS_JOB_HEARTBEAT_SECONDS and samples peak memory meanwhile."""

    def __init__(self, job_id: int) -> None:
        super().__init__(name=f"job-{job_id}-monitor", daemon=True)
        self.job_id = job_id
        self.sampler = MemorySampler()
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(settings.LIKENESS_JOB_HEARTBEAT_SECONDS):
                self.sampler.sample()
                beat(self.job_id, peak_memory_bytes=self.sampler.peak_bytes)
        except Exception:
            logger.warning("heartbeat of job %s failed", self.job_id, exc_info=True)
        finally:
            connection.close()  # this thread's own database connection

    def stop(self) -> int:
        self._stop_event.set()
        self.join(timeout=30)
        self.sampler.sample()
        return self.sampler.peak_bytes


INTERNAL_ERROR = (
    "The job failed because of an error in Likeness, not in what was asked. The operator can find the "
    "details in the GPU worker's log under job {job_id}; trying again may work."
)


def run_job(job_id: int, dispatch_token: str, *, host: str) -> StartOutcome:
    """Claim and run one job to its end; what the broker message amounted to."""
    outcome, job = mark_started(job_id, dispatch_token, host=host)
    if outcome is not StartOutcome.RUN:
        return outcome
    assert job is not None
    kind = job_kind(job.kind)
    monitor = _Monitor(job.pk)
    monitor.start()
    context: JobContext | None = None
    status, code, message = JobStatus.SUCCEEDED, "", ""
    try:
        context = JobContext(job, kind)
        context.check()  # consent again, at the start: a lapse since queueing fails it, writing nothing
        kind.execute(context.specific, context)
    except JobStopped as stop:
        status = JobStatus.CANCELLED if stop.code == "cancelled" else JobStatus.FAILED
        code, message = stop.code, stop.reason
    except consent_actions.ConsentRequiredError as error:
        status, code, message = JobStatus.FAILED, f"consent_{error.reason.value}", error.message
    except JobError as error:
        status, code, message = JobStatus.FAILED, error.code, error.message
    except SoftTimeLimitExceeded:
        status, code = JobStatus.FAILED, "time_limit"
        message = (
            f"The job ran longer than the worker's limit ({settings.CELERY_TASK_SOFT_TIME_LIMIT} s) and was "
            "stopped. Choose a shorter preset or fewer steps."
        )
    except Exception:
        logger.exception("job %s (%s) failed", job.pk, job.kind)
        status, code, message = JobStatus.FAILED, "internal_error", INTERNAL_ERROR.format(job_id=job.pk)
    finally:
        peak = monitor.stop()
        if context is not None:
            context.cleanup()
    finish(
        job.pk,
        status,
        code=code,
        message=message,
        device=context.device if context is not None else None,
        peak_memory_bytes=peak,
    )
    return StartOutcome.DONE
