"""What the training actions share: their error, the base models an operator allows, and undoing stored
files when the transaction that recorded them fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import transaction

from consent.storage import private_storage


class TrainingActionError(Exception):
    """A request that cannot be carried out as given; `message` is meant for the person who made it."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def allowed_base_model(requested: str | None) -> str:
    """The base model to train on: the requested one if the operator allows it, else the default."""
    if not requested:
        return str(settings.LIKENESS_BASE_MODEL)
    if requested not in settings.LIKENESS_TRAINING_BASE_MODELS:
        allowed = ", ".join(settings.LIKENESS_TRAINING_BASE_MODELS)
        raise TrainingActionError(
            f"{requested[:100]!r} is not a base model this service trains on; allowed: {allowed}.",
            code="base_model_not_allowed",
        )
    return requested


@contextmanager
def atomic_with_files() -> Iterator[list[str]]:
    """A transaction whose stored files go with it when it fails: append each file's storage name.

    consent.actions.store_subject_file deletes its file when its own step fails,
    but the rows it writes roll back with an enclosing transaction that fails
    later, which would leave the file behind in storage, a partial artifact. Use
    this as the outermost transaction of a write that stores several files.
    """
    stored: list[str] = []
    try:
        with transaction.atomic():
            yield stored
    except BaseException:
        storage = private_storage()
        for name in stored:
            storage.delete(name)
        raise
