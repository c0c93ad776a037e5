"""Each role can do exactly what tenancy.permissions.ROLE_PERMISSIONS says, on every page and endpoint.

The expected answer of every case is computed from the role table, so changing
the table changes what is expected; the legal reviewer ends up read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from audit.models import AuditEntry
from tenancy import actions
from tenancy.models import Membership, Role
from tenancy.permissions import role_has_perm
from tests.consent.isolation_factories import make_erasure_request

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Case:
    method: str
    # may contain {member} (a staff membership's id), {entry} (an audit entry's id), {invitation} or
    # {request} (a pending erasure request that a staff member started)
    url: str
    perm: str
    data: dict[str, Any] | None = None
    ok: int = 200
    api: bool = False
    listing: bool = False  # a list whose rows are filtered by the permission instead of refused
    # API objects the role may not even view do not exist for it: 404, as for other tenants' objects.
    visible_with: str | None = None

    @property
    def id(self) -> str:
        return f"{self.method.upper()} {self.url}"


VIEW_MEMBER, VIEW_AUDIT = "tenancy.view_membership", "audit.view_auditentry"
VIEW_INVITATION = "tenancy.view_invitation"
VIEW_ERASURE, DECIDE_ERASURE = "consent.view_erasurerequest", "consent.confirm_erasurerequest"
NEWCOMER = {"email": "newcomer@example.test", "role": "staff"}

CASES = [
    # Dashboard
    Case("get", "/members/", "tenancy.view_membership"),
    Case("get", "/members/{member}/", "tenancy.view_membership"),
    Case("post", "/members/", "tenancy.add_invitation", NEWCOMER, ok=302),
    Case("get", "/members/invitations/{invitation}/", "tenancy.view_invitation"),
    Case(
        "post",
        "/members/invitations/{invitation}/",
        "tenancy.add_invitation",
        {"operation": "resend"},
        ok=302,
    ),
    Case(
        "post",
        "/members/invitations/{invitation}/",
        "tenancy.revoke_invitation",
        {"operation": "revoke"},
        ok=302,
    ),
    Case(
        "post",
        "/members/{member}/",
        "tenancy.change_membership",
        {"operation": "change_role", "role": "legal_reviewer"},
        ok=302,
    ),
    Case("post", "/members/{member}/", "tenancy.delete_membership", {"operation": "remove"}, ok=302),
    Case("get", "/settings/", "tenancy.change_tenant"),
    Case("post", "/settings/", "tenancy.change_tenant", {"name": "New name", "settings": '{"a": 1}'}, ok=302),
    Case("get", "/audit/", "audit.view_auditentry"),
    Case("get", "/audit/{entry}/", "audit.view_auditentry"),
    Case("get", "/audit/verify/", "audit.view_auditentry"),
    Case("get", "/audit/export.csv", "audit.export_auditentry"),
    Case("get", "/audit/export.json", "audit.export_auditentry"),
    # API
    Case("get", "/api/v1/tenant/", "tenancy.view_tenant", api=True),
    Case("patch", "/api/v1/tenant/", "tenancy.change_tenant", {"settings": {"a": 2}}, api=True),
    Case("get", "/api/v1/memberships/", "tenancy.view_membership", api=True, listing=True),
    Case(
        "get", "/api/v1/memberships/{member}/", "tenancy.view_membership", api=True, visible_with=VIEW_MEMBER
    ),
    Case("get", "/api/v1/invitations/", "tenancy.view_invitation", api=True, listing=True),
    Case(
        "get",
        "/api/v1/invitations/{invitation}/",
        "tenancy.view_invitation",
        api=True,
        visible_with=VIEW_INVITATION,
    ),
    Case("post", "/api/v1/invitations/", "tenancy.add_invitation", NEWCOMER, ok=201, api=True),
    Case(
        "post",
        "/api/v1/invitations/{invitation}/resend/",
        "tenancy.add_invitation",
        api=True,
        visible_with=VIEW_INVITATION,
    ),
    Case(
        "post",
        "/api/v1/invitations/{invitation}/revoke/",
        "tenancy.revoke_invitation",
        api=True,
        visible_with=VIEW_INVITATION,
    ),
    Case(
        "patch",
        "/api/v1/memberships/{member}/",
        "tenancy.change_membership",
        {"role": "legal_reviewer"},
        api=True,
        visible_with=VIEW_MEMBER,
    ),
    Case(
        "delete",
        "/api/v1/memberships/{member}/",
        "tenancy.delete_membership",
        ok=204,
        api=True,
        visible_with=VIEW_MEMBER,
    ),
    Case("get", "/api/v1/audit-entries/", "audit.view_auditentry", api=True, listing=True),
    Case("get", "/api/v1/audit-entries/{entry}/", "audit.view_auditentry", api=True, visible_with=VIEW_AUDIT),
    Case("get", "/api/v1/audit-entries/verify/", "audit.view_auditentry", api=True),
    Case("get", "/api/v1/audit-entries/export-csv/", "audit.export_auditentry", api=True),
    Case("get", "/api/v1/audit-entries/export-json/", "audit.export_auditentry", api=True),
    # The two-person rule: staff start an erasure, only an admin decides.
    Case("get", "/erasure-requests/", VIEW_ERASURE),
    Case("get", "/erasure-requests/{request}/confirm/", DECIDE_ERASURE),
    Case("post", "/erasure-requests/{request}/confirm/", DECIDE_ERASURE, ok=302),
    Case("post", "/erasure-requests/{request}/decline/", DECIDE_ERASURE, {"reason": "Not over yet"}, ok=302),
    Case("get", "/api/v1/erasure-requests/", VIEW_ERASURE, api=True, listing=True),
    Case(
        "post",
        "/api/v1/erasure-requests/{request}/confirm/",
        DECIDE_ERASURE,
        api=True,
        visible_with=VIEW_ERASURE,
    ),
    Case(
        "post",
        "/api/v1/erasure-requests/{request}/decline/",
        DECIDE_ERASURE,
        {"reason": "Not over yet"},
        api=True,
        visible_with=VIEW_ERASURE,
    ),
]


@pytest.fixture
def world(tenant_factory, member):
    tenant = tenant_factory(a=0)
    users = {role: member(tenant, role) for role in Role}
    member(tenant, Role.ADMIN)  # a second admin, so demoting/removing is never refused for being the last
    target = Membership.objects.get(user=member(tenant, Role.STAFF), tenant=tenant)
    invitation = actions.invite_member(actor=None, tenant=tenant, email="invited@example.test", role="staff")
    return tenant, users, target, invitation.invitation


def _send(client, case: Case, url: str):
    kwargs: dict[str, Any] = {}
    if case.data is not None:
        kwargs = {"data": case.data, "content_type": "application/json"} if case.api else {"data": case.data}
    return getattr(client, case.method)(url, **kwargs)


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_role_can_do_exactly_what_its_permissions_say(case, role, world, client_for):
    tenant, users, target, invitation = world
    client = client_for(users[role], tenant)
    entry = AuditEntry.objects.for_tenant(tenant).earliest("seq")
    # A pending request that a staff member started (the isolation factory makes one through the actions).
    request = make_erasure_request(tenant).pk if "erasure-requests" in case.url else None
    url = case.url.format(member=target.pk, entry=entry.pk, invitation=invitation.pk, request=request)
    before = AuditEntry.objects.for_tenant(tenant).count()
    allowed = role_has_perm(role, case.perm)

    response = _send(client, case, url)

    if case.listing:
        assert response.status_code == 200
        assert (len(response.json()["results"]) > 0) == allowed, (
            "the list shows rows exactly when the role may view them"
        )
    elif case.visible_with is not None and not role_has_perm(role, case.visible_with):
        assert response.status_code == 404
    elif allowed:
        assert response.status_code == case.ok, (
            response.status_code,
            getattr(response, "content", b"")[:300],
        )
    else:
        assert response.status_code == 403
        if case.method != "get":
            assert AuditEntry.objects.for_tenant(tenant).count() == before, "a refused write leaves no trace"
    if case.method != "get" and allowed:
        assert AuditEntry.objects.for_tenant(tenant).count() > before, "every allowed write is audited"


def test_legal_reviewer_is_read_only():
    writes = {c.perm for c in CASES if c.method != "get"}
    assert not any(role_has_perm(Role.LEGAL_REVIEWER, perm) for perm in writes)
    reads = {"audit.view_auditentry", "audit.export_auditentry", "tenancy.view_membership"}
    assert all(role_has_perm(Role.LEGAL_REVIEWER, perm) for perm in reads)


def test_api_refuses_requests_without_a_tenant(user_factory, api_client_for):
    response = api_client_for(user_factory()).get("/api/v1/audit-entries/")
    assert response.status_code == 403


def test_api_token_auth_and_tenant_header(tenant_factory, member, client):
    alpha, beta = tenant_factory("Alpha"), tenant_factory("Beta")
    user = member(alpha, Role.LEGAL_REVIEWER, username="reviewer")
    member(beta, Role.STAFF, user=user)
    bad = client.post("/api/v1/auth/token/", {"username": "reviewer", "password": "nope"})
    assert bad.status_code == 400
    token = client.post(
        "/api/v1/auth/token/", {"username": "reviewer", "password": "correct-horse-battery-staple"}
    )
    assert token.status_code == 200
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Token {token.json()['token']}"}
    from django.test import Client

    api = Client()
    me = api.get("/api/v1/me/", **auth).json()
    assert [m["tenant"] for m in me["memberships"]] == [alpha.slug, beta.slug]
    as_reviewer = api.get("/api/v1/audit-entries/", HTTP_X_LIKENESS_TENANT=alpha.slug, **auth).json()
    assert {row["action"] for row in as_reviewer["results"]} >= {"auth.token_issued", "auth.login_failed"}
    as_staff = api.get("/api/v1/audit-entries/", HTTP_X_LIKENESS_TENANT=beta.slug, **auth).json()
    assert as_staff["results"] == []
    stranger = tenant_factory("Gamma")
    assert api.get("/api/v1/audit-entries/", HTTP_X_LIKENESS_TENANT=stranger.slug, **auth).status_code == 404
    assert api.get("/api/v1/audit-entries/", HTTP_X_LIKENESS_TENANT="no-such", **auth).status_code == 404
