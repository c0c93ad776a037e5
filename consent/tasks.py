"""Celery tasks of the consent app: thin callers of consent.actions, on the default queue.

Both take IDs (or nothing), re-read state and are safe to run twice: a finished
certificate is left alone, and the sweep decides afresh what is due.
"""

from __future__ import annotations

from celery import shared_task

from consent import actions


@shared_task(name="consent.complete_erasure", acks_late=True)
def complete_erasure_task(certificate_id: int) -> str | None:
    """Finish an erasure whose key was destroyed in the revocation's transaction."""
    certificate = actions.complete_erasure(certificate_id)
    return str(certificate.public_id) if certificate is not None else None


@shared_task(name="consent.enforce_retention", acks_late=True)
def enforce_retention_task() -> list[str]:
    """The scheduled sweep (Celery beat): expiry, retention, and any interrupted erasure."""
    return actions.enforce_retention().lines
