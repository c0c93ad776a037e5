"""Isolation-test factories for the platform's own tenant-scoped models."""

from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model

from audit.actions import record
from audit.models import AuditEntry
from tenancy import actions
from tenancy.models import Invitation, Membership, Role, Tenant
from tests.isolation import isolation_factory

_numbers = itertools.count(1)


@isolation_factory(Membership)
def make_membership(tenant: Tenant) -> Membership:
    user = get_user_model()._default_manager.create_user(username=f"isolated-{next(_numbers)}", password=None)
    return actions.add_member(tenant=tenant, user=user, role=Role.STAFF)


@isolation_factory(Invitation)
def make_invitation(tenant: Tenant) -> Invitation:
    email = f"invited-{next(_numbers)}@example.test"
    return actions.invite_member(actor=None, tenant=tenant, email=email, role=Role.STAFF).invitation


@isolation_factory(AuditEntry)
def make_audit_entry(tenant: Tenant) -> AuditEntry:
    return record(tenant=tenant, action="test.isolation_probe", payload={"n": next(_numbers)})
