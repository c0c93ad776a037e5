"""Memberships and object permissions are read once per request, and never outlive it.

A page checks a dozen permissions; each used to read the membership row again.
The answers are now remembered for the request only (tenancy.request_facts):
a role changed or a membership removed counts from the next request on, and a
change made during a request counts for the rest of that request too.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from guardian.shortcuts import assign_perm

from consent import actions as consent_actions
from tenancy import actions
from tenancy.models import Membership, Role
from tenancy.permissions import has_perm
from tenancy.request_facts import request_facts

pytestmark = pytest.mark.django_db


def test_a_request_reads_the_membership_once_for_every_check(tenant_factory, member):
    tenant = tenant_factory()
    admin = member(tenant, Role.ADMIN)
    with request_facts(), CaptureQueriesContext(connection) as queries:
        for perm in (
            "tenancy.change_tenant",
            "consent.view_subject",
            "consent.erase_subject",
            "audit.view_auditentry",
        ):
            assert has_perm(admin, tenant, perm)
    assert len(queries) == 1, [query["sql"] for query in queries]


def test_outside_a_request_every_check_reads_the_database(tenant_factory, member):
    """Tasks and commands have no request: nothing is remembered between their checks."""
    tenant = tenant_factory()
    admin = member(tenant, Role.ADMIN)
    with CaptureQueriesContext(connection) as queries:
        assert has_perm(admin, tenant, "tenancy.change_tenant")
        Membership.objects.filter(user=admin, tenant=tenant).delete()
        assert not has_perm(admin, tenant, "tenancy.change_tenant")
    assert len(queries) >= 3


def test_a_role_changed_during_a_request_counts_for_the_rest_of_it(tenant_factory, member):
    tenant = tenant_factory()
    first, second = member(tenant, Role.ADMIN), member(tenant, Role.ADMIN)
    membership = Membership.objects.get(user=second, tenant=tenant)
    with request_facts():
        assert has_perm(second, tenant, "tenancy.change_tenant")
        actions.change_member_role(actor=first, membership=membership, role=Role.LEGAL_REVIEWER)
        assert not has_perm(second, tenant, "tenancy.change_tenant")


def test_an_object_permission_granted_during_a_request_counts_for_the_rest_of_it(tenant_factory, member):
    tenant = tenant_factory()
    legal = member(tenant, Role.LEGAL_REVIEWER)
    subject = consent_actions.create_subject(actor=None, tenant=tenant, display_name="Granted Person")
    with request_facts():
        assert not has_perm(legal, tenant, "consent.change_subject", subject)
        assign_perm("consent.change_subject", legal, subject)
        assert has_perm(legal, tenant, "consent.change_subject", subject)


def test_a_demoted_admin_loses_the_settings_page_on_the_next_request(tenant_factory, member, client_for):
    tenant = tenant_factory()
    first, second = member(tenant, Role.ADMIN), member(tenant, Role.ADMIN)
    client = client_for(second, tenant)
    assert client.get(reverse("tenant-settings")).status_code == 200
    actions.change_member_role(
        actor=first, membership=Membership.objects.get(user=second, tenant=tenant), role=Role.STAFF
    )
    assert client.get(reverse("tenant-settings")).status_code == 403


def test_a_removed_member_is_refused_on_the_next_api_request(tenant_factory, member, api_client_for):
    tenant = tenant_factory()
    first, second = member(tenant, Role.ADMIN), member(tenant, Role.ADMIN)
    client = api_client_for(second, tenant)  # the same user object on every request, as DRF's tests keep it
    assert client.get(reverse("membership-list")).status_code == 200
    actions.remove_member(actor=first, membership=Membership.objects.get(user=second, tenant=tenant))
    assert client.get(reverse("membership-list")).status_code == 404
