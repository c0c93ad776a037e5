"""What the training actions share: their error, the base models an operator allows, and undoing stored
files when the transaction that recorded them fails."""

from __future__ import annotations

from django.conf import settings


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
