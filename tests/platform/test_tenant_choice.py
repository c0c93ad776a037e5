"""A user of several tenants is never put into one silently: the web asks and remembers, the API asks.

Before, the first tenant by name was picked; so a tenant whose name sorted first
(for instance one that had just added the user) took over their next login and
every token request that did not name a tenant.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tenancy.models import Membership, Role
from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_brands(tenant_factory, member) -> tuple[Any, Any, Any]:
    """`user` belongs to Alpha and Beta; Alpha sorts first, which must not matter."""
    alpha, beta = tenant_factory("Alpha"), tenant_factory("Beta")
    user = member(alpha, Role.STAFF, username="multi")
    member(beta, Role.ADMIN, user=user)
    return alpha, beta, user


def _login(username: str = "multi") -> Any:
    client = Client()
    response = client.post("/login/", {"username": username, "password": TEST_PASSWORD})
    assert response.status_code == 302, response.content[:300]
    return client


def test_login_with_several_tenants_and_no_choice_asks_which(two_brands):
    alpha, beta, _ = two_brands
    client = _login()

    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/tenant/choose/?next=/"
    assert response.wsgi_request.tenant is None
    chooser = client.get(response["Location"])
    assert chooser.status_code == 200
    page = chooser.content.decode()
    assert "Choose a tenant" in page
    assert f'value="{alpha.pk}"' in page and f'value="{beta.pk}"' in page


def test_every_tenant_page_asks_first_and_then_opens(two_brands):
    _, beta, _ = two_brands
    client = _login()

    assert client.get("/members/")["Location"] == "/tenant/choose/?next=/members/"
    chosen = client.post("/tenant/switch/", {"tenant_id": beta.pk, "next": "/members/"})

    assert chosen["Location"] == "/members/"
    members = client.get("/members/")
    assert members.status_code == 200
    assert members.wsgi_request.tenant == beta


def test_the_last_choice_is_remembered_for_the_next_login(two_brands):
    _, beta, user = two_brands
    first = _login()
    first.post("/tenant/switch/", {"tenant_id": beta.pk})
    first.post("/logout/")

    second = _login()
    response = second.get("/")

    assert response.status_code == 200
    assert response.wsgi_request.tenant == beta
    assert "<h1>Beta</h1>" in response.content.decode()
    assert Membership.objects.get(user=user, tenant=beta).last_selected_at is not None


def test_a_single_membership_needs_no_choice(tenant_factory, member):
    tenant = tenant_factory("Only")
    member(tenant, Role.STAFF, username="single")
    response = _login("single").get("/")
    assert response.status_code == 200
    assert response.wsgi_request.tenant == tenant


def test_a_remembered_tenant_one_left_asks_again(tenant_factory, member):
    alpha, beta, gamma = tenant_factory("Alpha"), tenant_factory("Beta"), tenant_factory("Gamma")
    user = member(beta, Role.STAFF, username="multi")
    member(alpha, Role.STAFF, user=user)
    member(gamma, Role.STAFF, user=user)
    _login().post("/tenant/switch/", {"tenant_id": beta.pk})
    Membership.objects.filter(user=user, tenant=beta).delete()

    response = _login().get("/")

    assert response.status_code == 302 and response["Location"].startswith("/tenant/choose/")


def test_the_chooser_lists_only_the_users_own_tenants(two_brands, tenant_factory):
    stranger = tenant_factory("Stranger Brand")
    response = _login().get("/tenant/choose/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Alpha" in page and "Beta" in page
    assert "Stranger Brand" not in page and f'value="{stranger.pk}"' not in page


def _token(username: str = "multi") -> dict[str, Any]:
    response = Client().post("/api/v1/auth/token/", {"username": username, "password": TEST_PASSWORD})
    assert response.status_code == 200
    return {"HTTP_AUTHORIZATION": f"Token {response.json()['token']}"}


def test_a_token_request_that_names_no_tenant_is_refused_when_ambiguous(two_brands, tenant_factory):
    alpha, beta, _ = two_brands
    tenant_factory("Not theirs")
    auth = _token()

    refused = Client().get("/api/v1/tenant/", **auth)

    assert refused.status_code == 400
    body = refused.json()
    assert "X-Likeness-Tenant" in body["detail"]
    assert body["tenants"] == [alpha.slug, beta.slug]  # the user's own memberships, nothing else
    named = Client().get("/api/v1/tenant/", HTTP_X_LIKENESS_TENANT=beta.slug, **auth)
    assert named.status_code == 200 and named.json()["slug"] == beta.slug


def test_an_ambiguous_write_changes_nothing(two_brands):
    _, beta, _ = two_brands
    refused = Client().patch(
        "/api/v1/tenant/", {"name": "Taken over"}, content_type="application/json", **_token()
    )
    assert refused.status_code == 400
    beta.refresh_from_db()
    assert beta.name == "Beta"


def test_a_session_request_names_its_tenant_too(two_brands, client_for):
    """The dashboard's active tenant can change in another tab: the API does not follow it silently."""
    _, beta, user = two_brands
    client = client_for(user, beta)
    assert client.get("/api/v1/memberships/").status_code == 400
    assert client.get("/api/v1/memberships/", HTTP_X_LIKENESS_TENANT=beta.slug).status_code == 200


def test_me_lists_the_memberships_without_a_header(two_brands):
    alpha, beta, _ = two_brands
    me = Client().get("/api/v1/me/", **_token())
    assert me.status_code == 200
    assert [m["tenant"] for m in me.json()["memberships"]] == [alpha.slug, beta.slug]


def test_a_single_membership_needs_no_header(tenant_factory, member):
    tenant = tenant_factory("Only")
    member(tenant, Role.ADMIN, username="single")
    response = Client().get("/api/v1/tenant/", **_token("single"))
    assert response.status_code == 200 and response.json()["slug"] == tenant.slug
