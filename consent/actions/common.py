"""What every consent action shares: its errors, the actor type and small formatting helpers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Max, QuerySet
from django.utils import timezone

from consent.locks import lock_tenant_row
from tenancy.models import Tenant

Actor = AbstractBaseUser | AnonymousUser | None


class ConsentReason(StrEnum):
    MISSING = "missing"
    EXPIRED = "expired"
    REVOKED = "revoked"
    NOT_YET_VALID = "not_yet_valid"


class ConsentRequiredError(Exception):
    """No consent in force covers what was asked; `message` says which purpose and why, in plain words."""

    def __init__(self, *, subject_id: int, purpose: str | None, reason: ConsentReason, message: str) -> None:
        super().__init__(message)
        self.subject_id = subject_id
        self.purpose = purpose
        self.reason = reason
        self.message = message


# The name later issues import: `consent.actions.ConsentRequired`.
ConsentRequired = ConsentRequiredError


class ConsentActionError(Exception):
    """A request that cannot be carried out as given; the message is meant for the person who made it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidLinkError(ConsentActionError):
    """The consent link is not one this deployment issued (or was altered)."""


def acting_user(actor: Actor) -> Any:
    """The user to store in a `*_by` column: None for the system and for anonymous visitors (the subject)."""
    return actor if actor is not None and actor.is_authenticated else None


def format_day(value: datetime) -> str:
    return timezone.localtime(value).strftime("%d %B %Y")


def next_version(tenant: Tenant, versions: QuerySet[Any]) -> int:
    """The next version number of a versioned document, under the tenant row lock (no two writers collide)."""
    lock_tenant_row(tenant)
    return int(versions.aggregate(latest=Max("version"))["latest"] or 0) + 1
