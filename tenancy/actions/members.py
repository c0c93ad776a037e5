"""Memberships: the system adds an account directly (create_tenant --admin, seed_demo); admins
change roles and remove members."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.actions import record
from tenancy.actions.tenants import locked_tenant
from tenancy.models import Membership, Role, Tenant
from tenancy.permissions import UserLike, require_perm


def _admin_count(tenant: Tenant) -> int:
    return Membership.objects.filter(tenant=tenant, role=Role.ADMIN).count()


@transaction.atomic
def add_member(*, tenant: Tenant, user: Any, role: Role | str) -> Membership:
    """The operator's direct way in (create_tenant, seed_demo): audited with the system as actor.

    No user can call this for another account: tenant admins invite (`invite_member`),
    and the invited person accepts.
    """
    role = Role(role)
    locked_tenant(tenant)
    if Membership.objects.filter(tenant=tenant, user_id=user.pk).exists():
        raise ValidationError(f"{user} is already a member of {tenant.name}.")
    membership = Membership.objects.create(tenant=tenant, user=user, role=role)
    record(
        tenant=tenant,
        action="membership.added",
        target=membership,
        payload={"user_id": user.pk, "role": role.value},
    )
    return membership


@transaction.atomic
def change_member_role(*, actor: UserLike | None, membership: Membership, role: Role | str) -> Membership:
    tenant = membership.tenant
    require_perm(actor, tenant, "tenancy.change_membership")
    role = Role(role)
    locked_tenant(tenant)
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
    locked_tenant(tenant)
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


def remember_tenant_choice(membership: Membership) -> None:
    """Note that the user chose this tenant, so it opens on their next login.

    Not audited: it changes nobody's access, only which of the user's own
    tenants they see first.
    """
    Membership.objects.filter(pk=membership.pk).update(last_selected_at=timezone.now())
