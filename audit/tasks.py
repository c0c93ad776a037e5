"""Celery tasks of the audit app: the periodic anchoring of every chain (beat, default queue)."""

from __future__ import annotations

from celery import shared_task

from audit.anchoring import anchor_chains


@shared_task(name="audit.anchor_chains", acks_late=True)
def anchor_chains_task() -> list[str]:
    """Checkpoints for every chain that grew; failures are logged by anchor_chains and retried next run."""
    run = anchor_chains()
    return run.lines + run.failures
