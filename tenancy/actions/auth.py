"""Sessions and API tokens: logins, failures and lockouts in the audit log, named hashed tokens,
password changes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from audit.actions import record
from audit.models import AuditEntry
from tenancy.actions.tenants import locked_tenant
from tenancy.authentication import hash_key, new_key
from tenancy.models import ApiToken, Tenant
from tenancy.permissions import UserLike

MAX_ACTIVE_API_TOKENS = 20
MAX_ENDED_API_TOKENS = 50
MAX_TOKEN_NAME_CHARS = 100


def _tenants_of(user: Any) -> list[Tenant]:
    return list(Tenant.objects.filter(memberships__user_id=user.pk).order_by("pk"))


def _record_for_user(
    user: Any, action: str, actor: UserLike | None, payload: dict[str, Any] | None = None
) -> None:
    """`action` about `user` in each of the user's tenants: each tenant's reviewers see their members."""
    for tenant in _tenants_of(user):
        record(tenant=tenant, action=action, actor=actor, target=user, payload=payload)


@transaction.atomic
def record_login(user: AbstractBaseUser) -> None:
    _record_for_user(user, "auth.login", user)


@transaction.atomic
def record_logout(user: AbstractBaseUser) -> None:
    _record_for_user(user, "auth.logout", user)


def _record_once_per_window(username: str, action: str, payload: dict[str, Any]) -> None:
    """`action` about the account named `username`, at most once per cool-off window in each of its tenants.

    Anonymous traffic decides how often this runs, so what it may add to a
    tenant's chain is bounded by time, not by attempts. The check is repeated
    under the tenant's lock, so concurrent attempts cannot add a second entry.
    """
    user_model = get_user_model()
    user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
    if user is None:
        return
    since = timezone.now() - timedelta(minutes=django_settings.LIKENESS_LOGIN_COOLOFF_MINUTES)

    def recorded(tenant: Tenant) -> bool:
        return (
            AuditEntry.objects.for_tenant(tenant)
            .filter(action=action, target_type=user._meta.label_lower, target_id=str(user.pk), at__gte=since)
            .exists()
        )

    for tenant in _tenants_of(user):
        if recorded(tenant):
            continue
        with transaction.atomic():
            locked_tenant(tenant)
            if not recorded(tenant):
                record(tenant=tenant, action=action, actor=None, target=user, payload=payload)


def record_login_failure(username: str) -> None:
    """A failed login for a member's account (without the attempt): the first of each window is logged."""
    _record_once_per_window(
        username, "auth.login_failed", {"window_minutes": django_settings.LIKENESS_LOGIN_COOLOFF_MINUTES}
    )


def record_lockout(username: str, failures: int | None) -> None:
    """A lockout of a member's account began (django-axes): how many failures, and for how long."""
    payload: dict[str, Any] = {"cooloff_minutes": django_settings.LIKENESS_LOGIN_COOLOFF_MINUTES}
    if failures is not None:
        payload["failures"] = failures
    _record_once_per_window(username, "auth.lockout", payload)


def _active_tokens(user: Any, now: datetime) -> QuerySet[ApiToken]:
    return ApiToken.owned_by(user).filter(revoked_at__isnull=True, expires_at__gt=now)


def issue_api_token(user: Any, *, name: str, via: str, days: int | None = None) -> tuple[ApiToken, str]:
    """A new named token of `user` and its key, audited in each of the user's tenants (never the key).

    The key is returned once and stored nowhere. `days` may only shorten the
    configured lifetime. At most MAX_ACTIVE_API_TOKENS are active at a time, and
    only the newest MAX_ENDED_API_TOKENS ended ones are kept for the owner to see.
    """
    longest = django_settings.LIKENESS_API_TOKEN_DAYS
    days = longest if days is None else days
    if not 1 <= days <= longest:
        raise ValidationError(f"A token lives from 1 to {longest} days.")
    name = name.strip()
    if not 1 <= len(name) <= MAX_TOKEN_NAME_CHARS:
        raise ValidationError(f"A token needs a name of 1 to {MAX_TOKEN_NAME_CHARS} characters.")
    with transaction.atomic():
        # The user's row lock serializes concurrent issues, so the cap holds.
        get_user_model()._default_manager.select_for_update().filter(pk=user.pk).values_list("pk").get()
        now = timezone.now()
        if _active_tokens(user, now).count() >= MAX_ACTIVE_API_TOKENS:
            raise ValidationError(
                f"You already have {MAX_ACTIVE_API_TOKENS} active API tokens: "
                "revoke one you no longer use first."
            )
        ended = (
            ApiToken.owned_by(user)
            .filter(Q(revoked_at__isnull=False) | Q(expires_at__lte=now))
            .values_list("pk", flat=True)[MAX_ENDED_API_TOKENS:]
        )
        ApiToken.objects.filter(pk__in=list(ended)).delete()
        prefix, key = new_key()
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=prefix,
            key_hash=hash_key(key),
            expires_at=now + timedelta(days=days),
        )
        _record_for_user(
            user,
            "auth.token_issued",
            user,
            {"token_id": token.pk, "name": name, "expires_at": token.expires_at.isoformat(), "via": via},
        )
    return token, key


def _end_tokens(tokens: QuerySet[ApiToken], reason: ApiToken.EndReason) -> list[int]:
    ids = list(tokens.select_for_update().filter(revoked_at__isnull=True).values_list("pk", flat=True))
    ApiToken.objects.filter(pk__in=ids).update(revoked_at=timezone.now(), revoked_reason=reason)
    return ids


@transaction.atomic
def revoke_api_token(*, actor: UserLike | None, token: ApiToken) -> None:
    """Its owner ends one token at once (operators end all of a user's with `revoke_all_api_tokens`)."""
    if actor is None or actor.pk != token.user_id:
        raise PermissionDenied("Only its owner revokes a token here.")
    reason = ApiToken.EndReason.REVOKED
    if ids := _end_tokens(ApiToken.objects.filter(pk=token.pk), reason):
        _record_for_user(token.user, "auth.token_revoked", actor, {"token_ids": ids, "reason": reason.value})


@transaction.atomic
def revoke_all_api_tokens(user: Any) -> list[int]:
    """The operator ends every active token of `user` (a leaked key, a departing employee)."""
    reason = ApiToken.EndReason.OPERATOR
    ids = _end_tokens(_active_tokens(user, timezone.now()), reason)
    _record_for_user(user, "auth.token_revoked", None, {"token_ids": ids, "reason": reason.value})
    return ids


@transaction.atomic
def record_password_change(user: Any) -> None:
    """The stored password changed, by whatever path: every active token of the user ends with it.

    Sessions need nothing here: Django derives their validity from the password
    hash, so every other session ends by itself (the changing one is kept by
    update_session_auth_hash on the dashboard's page). The actor is unknown to
    the model signal that calls this, so the entry names none.
    """
    ids = _end_tokens(_active_tokens(user, timezone.now()), ApiToken.EndReason.PASSWORD_CHANGED)
    _record_for_user(user, "auth.password_changed", None, {"revoked_token_ids": ids})
