"""tenancy.actions: every write checks the actor's permission and leaves an audit entry."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from audit.models import AuditEntry
from tenancy import actions
from tenancy.models import Membership, Role, Tenant

pytestmark = pytest.mark.django_db


def _last(tenant: Tenant) -> AuditEntry:
    return AuditEntry.objects.for_tenant(tenant).latest("seq")


def test_create_tenant_starts_its_chain():
    tenant = actions.create_tenant(name=" Acme ", slug="acme")
    entry = _last(tenant)
    assert (tenant.name, entry.seq, entry.action, entry.actor_id) == ("Acme", 1, "tenant.created", None)


def test_only_the_operator_creates_tenants(user_factory):
    with pytest.raises(PermissionDenied):
        actions.create_tenant(name="X", slug="x", actor=user_factory())
    with pytest.raises(ValidationError):
        actions.create_tenant(name="Bad", slug="not a slug")
    assert not Tenant.objects.filter(name__in=["X", "Bad"]).exists()


def test_membership_lifecycle_is_audited(tenant_factory, member, user_factory):
    tenant = tenant_factory()
    admin = member(tenant, Role.ADMIN)
    newcomer = user_factory()
    membership = actions.add_member(tenant=tenant, user=newcomer, role=Role.STAFF)  # the operator's path
    entry = _last(tenant)
    assert (entry.action, entry.actor_id, entry.target_type, entry.target_id) == (
        "membership.added",
        None,
        "tenancy.membership",
        str(membership.pk),
    )
    assert entry.payload == {"user_id": newcomer.pk, "role": "staff"}

    actions.change_member_role(actor=admin, membership=membership, role=Role.LEGAL_REVIEWER)
    assert _last(tenant).payload == {"user_id": newcomer.pk, "from": "staff", "to": "legal_reviewer"}

    actions.remove_member(actor=admin, membership=membership)
    assert _last(tenant).action == "membership.removed"
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_duplicate_membership_is_a_clear_error(tenant_factory, member):
    tenant = tenant_factory()
    admin = member(tenant, Role.ADMIN)
    before = AuditEntry.objects.for_tenant(tenant).count()
    with pytest.raises(ValidationError, match="already a member"):
        actions.add_member(tenant=tenant, user=admin, role=Role.STAFF)
    assert AuditEntry.objects.for_tenant(tenant).count() == before


def test_the_last_admin_cannot_be_demoted_or_removed(tenant_factory, member):
    tenant = tenant_factory()
    admin = member(tenant, Role.ADMIN)
    membership = Membership.objects.get(user=admin, tenant=tenant)
    with pytest.raises(ValidationError, match="at least one admin"):
        actions.change_member_role(actor=admin, membership=membership, role=Role.STAFF)
    with pytest.raises(ValidationError, match="at least one admin"):
        actions.remove_member(actor=admin, membership=membership)
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN


@pytest.mark.parametrize("role", [Role.STAFF, Role.LEGAL_REVIEWER])
def test_non_admins_cannot_change_members_or_settings(tenant_factory, member, role):
    tenant = tenant_factory(retention_days=30)
    actor = member(tenant, role)
    membership = Membership.objects.get(user=actor, tenant=tenant)
    with pytest.raises(PermissionDenied):
        actions.invite_member(actor=actor, tenant=tenant, email="new@example.test", role=Role.ADMIN)
    with pytest.raises(PermissionDenied):
        actions.change_member_role(actor=actor, membership=membership, role=Role.ADMIN)
    with pytest.raises(PermissionDenied):
        actions.remove_member(actor=actor, membership=membership)
    with pytest.raises(PermissionDenied):
        actions.update_tenant(actor=actor, tenant=tenant, settings={"retention_days": 1})
    tenant.refresh_from_db()
    assert tenant.settings == {"retention_days": 30}
    assert AuditEntry.objects.for_tenant(tenant).count() == 0


def test_admin_of_another_tenant_has_no_say_here(tenant_factory, member):
    here, there = tenant_factory(), tenant_factory()
    outsider = member(there, Role.ADMIN)
    with pytest.raises(PermissionDenied):
        actions.invite_member(actor=outsider, tenant=here, email="new@example.test", role=Role.STAFF)


@pytest.mark.parametrize("bad", [["not", "an", "object"], {"x": object()}, {"big": "x" * 40000}])
def test_bad_settings_are_refused_and_nothing_changes(tenant_factory, member, bad):
    tenant = tenant_factory(keep="me")
    admin = member(tenant, Role.ADMIN)
    with pytest.raises(ValidationError):
        actions.update_tenant(actor=admin, tenant=tenant, settings=bad)
    tenant.refresh_from_db()
    assert tenant.settings == {"keep": "me"}


def test_login_logout_and_failed_login_are_audited_in_each_tenant(tenant_factory, member, client):
    first, second, unrelated = tenant_factory(), tenant_factory(), tenant_factory()
    user = member(first, Role.STAFF, username="multi")
    member(second, Role.LEGAL_REVIEWER, user=user)
    assert client.post("/login/", {"username": "multi", "password": "wrong"}).status_code == 200
    assert (
        client.post("/login/", {"username": "multi", "password": "correct-horse-battery-staple"}).status_code
        == 302
    )
    assert client.post("/logout/").status_code == 302
    for tenant in (first, second):
        actions_seen = list(
            AuditEntry.objects.for_tenant(tenant).order_by("seq").values_list("action", flat=True)
        )
        assert actions_seen == ["auth.login_failed", "auth.login", "auth.logout"]
    assert AuditEntry.objects.for_tenant(unrelated).count() == 0
    failed = AuditEntry.objects.for_tenant(first).get(action="auth.login_failed")
    assert failed.actor_id is None and failed.target_id == str(user.pk)
    assert "wrong" not in str(failed.payload)
