"""Every write to tenants and memberships, with its permission check and audit entry.

Views, API viewsets and commands call these and nothing else. `actor=None`
means the system (management commands such as seed_demo); every other caller
passes the acting user, whose permission is checked here.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from audit.actions import record
from audit.chain import canonical_json
from tenancy.models import Membership, Role, Tenant
from tenancy.permissions import UserLike, require_perm

MAX_SETTINGS_BYTES = 32 * 1024


def _lock(tenant: Tenant) -> Tenant:
    return Tenant.objects.select_for_update().get(pk=tenant.pk)


@transaction.atomic
def create_tenant(*, name: str, slug: str, actor: UserLike | None = None) -> Tenant:
    """A new brand; its chain starts with `tenant.created`. Only the system or a superuser may do this."""
    if actor is not None and not getattr(actor, "is_superuser", False):
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied("Only the operator (superuser or a management command) creates tenants.")
    tenant = Tenant(name=name.strip(), slug=slug.strip())
    tenant.full_clean()
    tenant.save()
    record(tenant=tenant, action="tenant.created", actor=actor, target=tenant, payload={"slug": tenant.slug})
    return tenant


def _admin_count(tenant: Tenant) -> int:
    return Membership.objects.filter(tenant=tenant, role=Role.ADMIN).count()


@transaction.atomic
def add_member(*, actor: UserLike | None, tenant: Tenant, user: Any, role: Role | str) -> Membership:
    require_perm(actor, tenant, "tenancy.add_membership")
    role = Role(role)
    _lock(tenant)
    if Membership.objects.filter(tenant=tenant, user_id=user.pk).exists():
        raise ValidationError(f"{user} is already a member of {tenant.name}.")
    membership = Membership.objects.create(tenant=tenant, user=user, role=role)
    record(
        tenant=tenant,
        action="membership.added",
        actor=actor,
        target=membership,
        payload={"user_id": user.pk, "role": role.value},
    )
    return membership


@transaction.atomic
def change_member_role(*, actor: UserLike | None, membership: Membership, role: Role | str) -> Membership:
    tenant = membership.tenant
    require_perm(actor, tenant, "tenancy.change_membership")
    role = Role(role)
    _lock(tenant)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    previous = membership.role
    if previous == role:
        return membership
    if previous == Role.ADMIN and _admin_count(tenant) == 1:
        raise ValidationError("A tenant keeps at least one admin: promote someone else first.")
    membership.role = role
    membership.save(update_fields=["role"])
    record(
        tenant=tenant,
        action="membership.role_changed",
        actor=actor,
        target=membership,
        payload={"user_id": membership.user_id, "from": previous, "to": role.value},
    )
    return membership


@transaction.atomic
def remove_member(*, actor: UserLike | None, membership: Membership) -> None:
    tenant = membership.tenant
    require_perm(actor, tenant, "tenancy.delete_membership")
    _lock(tenant)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == Role.ADMIN and _admin_count(tenant) == 1:
        raise ValidationError("A tenant keeps at least one admin: promote someone else first.")
    record(
        tenant=tenant,
        action="membership.removed",
        actor=actor,
        target=membership,
        payload={"user_id": membership.user_id, "role": membership.role},
    )
    membership.delete()


def _validate_settings(settings: Any) -> dict[str, Any]:
    if not isinstance(settings, dict) or not all(isinstance(key, str) for key in settings):
        raise ValidationError("Tenant settings must be a JSON object with string keys.")
    try:
        size = len(canonical_json(settings).encode())
    except (TypeError, ValueError) as error:
        raise ValidationError(f"Tenant settings must be plain JSON: {error}") from None
    if size > MAX_SETTINGS_BYTES:
        raise ValidationError(f"Tenant settings are limited to {MAX_SETTINGS_BYTES} bytes.")
    return settings


@transaction.atomic
def update_tenant(
    *, actor: UserLike | None, tenant: Tenant, name: str | None = None, settings: dict[str, Any] | None = None
) -> Tenant:
    """Rename the tenant and/or replace its settings; the audit entry lists what changed, old and new."""
    require_perm(actor, tenant, "tenancy.change_tenant")
    locked = _lock(tenant)
    changes: dict[str, Any] = {}
    if name is not None and name.strip() != locked.name:
        changes["name"] = {"from": locked.name, "to": name.strip()}
        locked.name = name.strip()
    if settings is not None:
        new = _validate_settings(settings)
        for key in sorted(set(locked.settings) | set(new)):
            if locked.settings.get(key) != new.get(key) or (key in new) != (key in locked.settings):
                changes.setdefault("settings", {})[key] = {
                    "from": locked.settings.get(key),
                    "to": new.get(key),
                }
        locked.settings = new
    if not changes:
        return locked
    locked.full_clean()
    locked.save(update_fields=["name", "settings"])
    record(tenant=locked, action="tenant.settings_changed", actor=actor, target=locked, payload=changes)
    tenant.name, tenant.settings = locked.name, locked.settings
    return locked


def _tenants_of(user: Any) -> list[Tenant]:
    return list(Tenant.objects.filter(memberships__user_id=user.pk).order_by("pk"))


def record_login(user: AbstractBaseUser) -> None:
    """`auth.login` in every tenant of the user: each tenant's reviewers see their members' sessions."""
    with transaction.atomic():
        for tenant in _tenants_of(user):
            record(tenant=tenant, action="auth.login", actor=user, target=user)


def record_logout(user: AbstractBaseUser) -> None:
    with transaction.atomic():
        for tenant in _tenants_of(user):
            record(tenant=tenant, action="auth.logout", actor=user, target=user)


def record_login_failure(username: str) -> None:
    """A failed password for a known member, logged (without the attempt) in the member's tenants."""
    user = get_user_model()._default_manager.filter(**{get_user_model().USERNAME_FIELD: username}).first()
    if user is None:
        return
    with transaction.atomic():
        for tenant in _tenants_of(user):
            record(tenant=tenant, action="auth.login_failed", actor=None, target=user)


def issue_api_token(user: AbstractBaseUser) -> Any:
    """The user's API token (created on first request), audited in each of the user's tenants."""
    from rest_framework.authtoken.models import Token

    with transaction.atomic():
        token, created = Token.objects.get_or_create(user=user)
        for tenant in _tenants_of(user):
            record(
                tenant=tenant,
                action="auth.token_issued",
                actor=user,
                target=user,
                payload={"new_token": created},
            )
    return token
