"""Tenant-scoped lookups, the active tenant of a request, permissions with guardian grants."""

from __future__ import annotations

import pytest
from django.http import Http404
from guardian.shortcuts import assign_perm

from audit.actions import record
from audit.models import AuditEntry
from tenancy.access import get_for_tenant_or_404
from tenancy.context import SESSION_KEY
from tenancy.models import Membership, Role
from tenancy.permissions import ROLE_PERMISSIONS, has_perm, restrict_to_perm

pytestmark = pytest.mark.django_db


def test_missing_foreign_and_malformed_ids_give_the_same_404(tenant_factory):
    a, b = tenant_factory(), tenant_factory()
    entry = record(tenant=a, action="test.event")
    assert get_for_tenant_or_404(AuditEntry, a, pk=entry.pk) == entry
    messages = set()
    for tenant, pk in ((b, entry.pk), (a, 10**9), (a, "not-a-number"), (None, entry.pk)):
        with pytest.raises(Http404) as raised:
            get_for_tenant_or_404(AuditEntry, tenant, pk=pk)
        messages.add(str(raised.value))
    assert len(messages) == 1


def test_lookup_works_for_plain_models_with_a_tenant_key(tenant_factory, member):
    a, b = tenant_factory(), tenant_factory()
    user = member(a, Role.STAFF)
    membership = Membership.objects.get(user=user)
    assert get_for_tenant_or_404(Membership, a, pk=membership.pk) == membership
    with pytest.raises(Http404):
        get_for_tenant_or_404(Membership, b, pk=membership.pk)


def _request_for(client, path="/"):
    """The request object the middleware saw, by rendering a page and reading its context."""
    response = client.get(path)
    return response.wsgi_request


def test_middleware_sets_the_active_tenant_and_switching_changes_it(tenant_factory, member, client_for):
    alpha, beta = tenant_factory("Alpha"), tenant_factory("Beta")
    user = member(alpha, Role.STAFF)
    member(beta, Role.ADMIN, user=user)
    client = client_for(user)
    request = _request_for(client)
    assert request.tenant is None and request.membership is None  # several tenants, none chosen yet
    client.post("/tenant/switch/", {"tenant_id": alpha.pk})
    request = _request_for(client)
    assert request.tenant == alpha and request.membership.role == Role.STAFF
    response = client.post("/tenant/switch/", {"tenant_id": beta.pk, "next": "/members/"})
    assert response.status_code == 302 and response["Location"] == "/members/"
    request = _request_for(client)
    assert request.tenant == beta and request.membership.role == Role.ADMIN


def test_switching_to_a_tenant_one_does_not_belong_to_is_a_404(tenant_factory, member, client_for):
    mine, theirs = tenant_factory(), tenant_factory()
    user = member(mine, Role.ADMIN)
    client = client_for(user, mine)
    assert client.post("/tenant/switch/", {"tenant_id": theirs.pk}).status_code == 404
    assert client.post("/tenant/switch/", {"tenant_id": "nonsense"}).status_code == 404
    assert _request_for(client).tenant == mine


def test_switch_refuses_to_redirect_off_site(tenant_factory, member, client_for):
    tenant = tenant_factory()
    client = client_for(member(tenant, Role.STAFF), tenant)
    response = client.post("/tenant/switch/", {"tenant_id": tenant.pk, "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_a_removed_membership_stops_counting_at_once(tenant_factory, member, client_for):
    alpha, beta = tenant_factory("Alpha"), tenant_factory("Beta")
    user = member(alpha, Role.STAFF)
    member(beta, Role.STAFF, user=user)
    client = client_for(user, beta)
    assert _request_for(client).tenant == beta
    Membership.objects.filter(user=user, tenant=beta).delete()
    request = _request_for(client)
    assert request.tenant == alpha
    assert request.session[SESSION_KEY] == alpha.pk


def test_anonymous_and_tenantless_requests_have_no_tenant(user_factory, client_for, client):
    assert _request_for(client, "/login/").tenant is None
    lonely = client_for(user_factory())
    response = lonely.get("/")
    assert response.status_code == 403 and b"No tenant yet" in response.content
    assert response.wsgi_request.tenant is None and response.wsgi_request.membership is None


def test_role_table_and_object_grants(tenant_factory, member, user_factory):
    tenant, other = tenant_factory(), tenant_factory()
    staff = member(tenant, Role.STAFF)
    legal = member(tenant, Role.LEGAL_REVIEWER)
    entries = [record(tenant=tenant, action="test.event", payload={"i": i}) for i in range(3)]
    foreign = record(tenant=other, action="test.event")

    assert has_perm(legal, tenant, "audit.view_auditentry")
    assert not has_perm(staff, tenant, "audit.view_auditentry")
    assert not has_perm(legal, other, "audit.view_auditentry")  # no membership there
    assert not has_perm(legal, tenant, "audit.view_auditentry", foreign)  # object of another tenant

    # A guardian grant opens exactly one object to a user whose role does not.
    assign_perm("audit.view_auditentry", staff, entries[1])
    assert has_perm(staff, tenant, "audit.view_auditentry", entries[1])
    assert not has_perm(staff, tenant, "audit.view_auditentry", entries[0])
    scoped = AuditEntry.objects.for_tenant(tenant)
    assert list(restrict_to_perm(scoped, staff, tenant, "audit.view_auditentry")) == [entries[1]]
    assert restrict_to_perm(scoped, legal, tenant, "audit.view_auditentry").count() == 3
    assert restrict_to_perm(scoped, user_factory(), tenant, "audit.view_auditentry").count() == 0


def test_superuser_flag_grants_nothing_inside_a_tenant(tenant_factory, member, user_factory):
    tenant = tenant_factory()
    root = user_factory(is_superuser=True, is_staff=True)
    entry = record(tenant=tenant, action="test.event")
    assert not has_perm(root, tenant, "audit.view_auditentry", entry)
    member(tenant, Role.STAFF, user=root)
    assert not has_perm(root, tenant, "audit.view_auditentry", entry)


def test_role_table_names_only_real_permissions():
    from django.contrib.auth.models import Permission

    known = {
        f"{app}.{code}" for app, code in Permission.objects.values_list("content_type__app_label", "codename")
    }
    for role, perms in ROLE_PERMISSIONS.items():
        assert perms <= known, (role, perms - known)


@pytest.mark.django_db
@pytest.mark.parametrize("extra", [5, 60])
def test_the_members_page_is_paginated_at_a_constant_query_count(
    tenant_factory, member, user_factory, client_for, extra, django_assert_max_num_queries
):
    from tenancy import actions
    from tenancy.views import MEMBERS_PER_PAGE

    tenant = tenant_factory()
    admin = member(tenant, Role.ADMIN, username="aaa-admin")
    for number in range(extra):
        actions.add_member(tenant=tenant, user=user_factory(username=f"member-{number:02}"), role=Role.STAFF)
    client = client_for(admin, tenant)
    with django_assert_max_num_queries(25):
        first = client.get("/members/").content.decode()
    shown = min(extra + 1, MEMBERS_PER_PAGE)
    assert first.count('<td data-label="User"') == shown
    if extra + 1 > MEMBERS_PER_PAGE:
        assert 'rel="next"' in first
        rest = client.get("/members/?page=2").content.decode()
        assert rest.count('<td data-label="User"') == extra + 1 - MEMBERS_PER_PAGE
