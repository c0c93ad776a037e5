"""Celery tasks of the training app: thin callers of training.jobs and training.actions, taking ids.

`training.run_job` runs on the `gpu` queue (one worker process per GPU); the
tending task (reaper + dispatcher) on `default`, from beat; building a reference
set (dlib on the CPU) on `default` too. All are safe to deliver twice: a message
for a finished, cancelled or re-dispatched job does nothing, one that finds a
live run of its job asks again later, and a set's build runs once.
"""

from __future__ import annotations

import os
import socket

from celery import Task, shared_task
from django.conf import settings
from django.utils import timezone

from training.actions import build_reference_set
from training.jobs.dispatch import dispatch_jobs
from training.jobs.lifecycle import StartOutcome, requeue_or_fail_stale
from training.jobs.runner import run_job


@shared_task(
    name="training.run_job",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def run_job_task(self: Task, job_id: int, dispatch_token: str) -> str:
    """Run one job to its end in this worker process (CUDA, when used, is initialised here)."""
    outcome = run_job(job_id, dispatch_token, host=f"{socket.gethostname()}:{os.getpid()}")
    if outcome is StartOutcome.BUSY:
        # Another run of this job still beats: look again once its heartbeat would have gone stale.
        raise self.retry(countdown=settings.LIKENESS_JOB_STALE_SECONDS, queue="gpu")
    return outcome.value


@shared_task(name="training.tend_jobs", acks_late=True)
def tend_jobs_task() -> list[int]:
    """Beat: requeue (or fail) jobs whose worker stopped beating, then hand out free GPU slots."""
    touched = requeue_or_fail_stale(timezone.now())
    return touched + dispatch_jobs()


@shared_task(name="training.build_reference_set", acks_late=True)
def build_reference_set_task(reference_set_id: int) -> str:
    """Prepare a subject's reference photos into a reference set (default queue: dlib on the CPU)."""
    built = build_reference_set(reference_set_id)
    return built.status if built is not None else "already claimed"
