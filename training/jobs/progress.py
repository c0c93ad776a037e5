"""What a job looks like from outside: the snapshot the page, the socket and the API all show.

One function builds it from the stored row, so the first message on a socket,
every later event, the job page and the API agree to the field.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from training.models import Job, JobStatus

# The loss curve keeps at most this many points; older ones are thinned (every other one dropped).
MAX_LOSS_POINTS = 400


def thin_history(history: list[list[float]], point: list[float]) -> list[list[float]]:
    """Append a point, halving the resolution of the stored curve whenever it would grow past the bound."""
    if len(history) + 1 > MAX_LOSS_POINTS:
        history = history[::2]
    return [*history, point]


def preview_urls(job: Job) -> list[dict[str, Any]]:
    """Filtered in Python over `job.previews.all()` (step order, the model's), so a list that
    prefetches "previews" reads them once for the page rather than once per job."""
    return [
        {"step": preview.step, "url": reverse("consent-asset-file", args=[preview.asset_id])}
        for preview in job.previews.all()
        if preview.asset_id is not None
    ]


def queue_position(job: Job) -> int | None:
    """1 = the next to start, among every tenant's waiting jobs; None once handed to a worker."""
    if job.status != JobStatus.QUEUED or job.dispatched_at is not None:
        return None
    from training.jobs.dispatch import queue_positions

    return queue_positions(job.tenant).get(job.pk)


def snapshot(job: Job) -> dict[str, Any]:
    """The job's state as stored (progress, ETA, losses, place in line, previews, outcome)."""
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "status_label": JobStatus(job.status).label,
        "subject": job.subject_id,
        "phase": job.phase,
        "step": job.step,
        "total_steps": job.total_steps,
        "progress": round(job.progress_fraction, 4),
        "eta_seconds": None if job.eta_seconds is None else round(job.eta_seconds, 1),
        "losses": job.losses,
        "learning_rates": job.learning_rates,
        "loss_history": job.loss_history,
        "notices": job.notices,
        "queue_position": queue_position(job),
        "cancel_requested": job.cancel_requested_at is not None,
        "worker_host": job.worker_host,
        "device": job.device,
        "error_code": job.error_code,
        "error_message": job.error_message,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "previews": preview_urls(job),
    }
