"""Joining a tenant takes an invitation the invited person accepts.

Before, `POST /api/v1/memberships/ {"username": ...}` (and the members page) let
any tenant admin add any account of any tenant at once, and the error text told
whether a username existed anywhere.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEntry
from tenancy import actions
from tenancy.actions import invitations as invitation_actions
from tenancy.models import Invitation, Membership, Role
from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db
LINK = re.compile(r"http://testserver/invitations/([A-Za-z0-9_-]+)/")
NEW_PASSWORD = "a-fresh-and-long-passphrase"


@pytest.fixture
def attacker_and_victim(tenant_factory, member) -> tuple[Any, Any, Any, Any]:
    """An admin of tenant A, and a user who belongs to tenant B only."""
    here, there = tenant_factory("Attacker Brand"), tenant_factory("Victim Brand")
    admin = member(here, Role.ADMIN, username="attacker-admin")
    victim = member(there, Role.STAFF, username="victim", email="victim@example.test")
    return here, there, admin, victim


def _token_from(mail: Any) -> str:
    match = LINK.search(mail.body)
    assert match, mail.body
    return match.group(1)


def _invite(client: Any, email: str, role: str = "staff") -> Any:
    return client.post("/api/v1/invitations/", {"email": email, "role": role}, format="json")


def _login(username: str, password: str = TEST_PASSWORD) -> Any:
    client = Client()
    assert client.post("/login/", {"username": username, "password": password}).status_code == 302
    return client


def test_an_admin_can_no_longer_add_another_tenants_user(attacker_and_victim, api_client_for, client_for):
    here, there, admin, victim = attacker_and_victim

    api = api_client_for(admin, here).post(
        "/api/v1/memberships/", {"username": "victim", "role": "staff"}, format="json"
    )
    page = client_for(admin, here).post("/members/", {"username": "victim", "role": "staff"})

    assert api.status_code == 405
    assert page.status_code == 400
    assert not Membership.objects.filter(user=victim, tenant=here).exists()
    # The victim's token client, which names no tenant, still works where it did.
    token = Client().post("/api/v1/auth/token/", {"username": "victim", "password": TEST_PASSWORD}).json()
    mine = Client().get("/api/v1/tenant/", HTTP_AUTHORIZATION=f"Token {token['token']}")
    assert mine.status_code == 200 and mine.json()["slug"] == there.slug


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value for key, value in body.items() if not key.endswith("_at") and key not in ("id", "email")
    }


def test_answers_do_not_tell_whether_an_account_exists(
    attacker_and_victim, api_client_for, client_for, mailoutbox
):
    here, _, admin, victim = attacker_and_victim
    api = api_client_for(admin, here)

    existing, unknown = _invite(api, victim.email), _invite(api, "nobody@example.test")

    assert existing.status_code == unknown.status_code == 201
    assert _comparable(existing.json()) == _comparable(unknown.json())
    assert [m.to for m in mailoutbox] == [[victim.email], ["nobody@example.test"]]
    page = client_for(admin, here)
    answers = [
        page.post("/members/", {"email": email, "role": "staff"}, follow=True)
        for email in ("victim2@example.test", "nobody2@example.test")
    ]
    texts = [[str(m) for m in answer.context["messages"]] for answer in answers]
    assert texts == [
        ["Invitation sent to victim2@example.test."],
        ["Invitation sent to nobody2@example.test."],
    ]
    assert not Membership.objects.filter(user=victim, tenant=here).exists()


def test_the_invited_user_accepts_and_the_membership_is_audited(
    attacker_and_victim, api_client_for, mailoutbox
):
    here, _, admin, victim = attacker_and_victim
    invitation_id = _invite(api_client_for(admin, here), "Victim@Example.TEST", role="legal_reviewer").json()[
        "id"
    ]
    token = _token_from(mailoutbox[0])
    client = _login("victim")

    page = client.get(f"/invitations/{token}/")
    assert page.status_code == 200
    assert "Attacker Brand" in page.content.decode() and "Legal reviewer" in page.content.decode()
    assert page["Referrer-Policy"] == "same-origin" and "no-store" in page["Cache-Control"]
    assert not Membership.objects.filter(user=victim, tenant=here).exists()  # opening it joins nothing
    accepted = client.post(f"/invitations/{token}/")

    assert accepted.status_code == 302 and accepted["Location"] == "/"
    membership = Membership.objects.get(user=victim, tenant=here)
    assert membership.role == Role.LEGAL_REVIEWER
    assert client.get("/").wsgi_request.tenant == here  # the tenant just joined, by the user's own act
    entries = AuditEntry.objects.for_tenant(here).filter(action__startswith="membership.invitation_")
    sent, joined = entries.order_by("seq")
    assert (sent.action, sent.actor_id, sent.target_id) == (
        "membership.invitation_sent",
        admin.pk,
        str(invitation_id),
    )
    assert (joined.action, joined.actor_id, joined.target_id) == (
        "membership.invitation_accepted",
        victim.pk,
        str(membership.pk),
    )
    assert joined.payload == {
        "invitation_id": invitation_id,
        "user_id": victim.pk,
        "role": "legal_reviewer",
        "new_account": False,
    }
    for entry in (sent, joined):
        assert "@" not in str(entry.payload) and token not in str(entry.payload)
    # Two tenants now: a token request that names none is refused, not sent to one of them.
    auth = Client().post("/api/v1/auth/token/", {"username": "victim", "password": TEST_PASSWORD}).json()
    assert Client().get("/api/v1/tenant/", HTTP_AUTHORIZATION=f"Token {auth['token']}").status_code == 400


def test_only_the_tokens_digest_is_stored(attacker_and_victim, api_client_for, mailoutbox):
    here, _, admin, _ = attacker_and_victim
    _invite(api_client_for(admin, here), "someone@example.test")
    token = _token_from(mailoutbox[0])
    invitation = Invitation.objects.for_tenant(here).get()
    assert invitation.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(Invitation.objects.for_tenant(here).values().get())


def test_a_person_without_an_account_creates_one_and_joins(
    tenant_factory, member, api_client_for, mailoutbox
):
    tenant = tenant_factory("Studio")
    _invite(api_client_for(member(tenant, Role.ADMIN), tenant), "newbie@example.test")
    token = _token_from(mailoutbox[0])
    client = Client()

    weak = client.post(
        f"/invitations/{token}/", {"username": "newbie", "password": "123", "password_again": "123"}
    )
    assert weak.status_code == 400 and "too short" in weak.content.decode()
    joined = client.post(
        f"/invitations/{token}/",
        {
            "username": "newbie",
            "password": NEW_PASSWORD,
            "password_again": NEW_PASSWORD,
            "email": "x@evil.test",
        },
    )

    assert joined.status_code == 302
    membership = Membership.objects.select_related("user").get(tenant=tenant, user__username="newbie")
    assert membership.user.email == "newbie@example.test"  # the invited address, never one the form sends
    assert membership.role == Role.STAFF
    assert client.get("/").wsgi_request.user == membership.user  # logged in
    entry = AuditEntry.objects.for_tenant(tenant).get(action="membership.invitation_accepted")
    assert entry.payload["new_account"] is True and entry.actor_id == membership.user.pk


def test_an_address_with_an_account_logs_in_instead_of_making_a_second(
    attacker_and_victim, api_client_for, mailoutbox
):
    here, _, admin, victim = attacker_and_victim
    _invite(api_client_for(admin, here), victim.email)
    token = _token_from(mailoutbox[0])
    page = Client().get(f"/invitations/{token}/").content.decode()
    assert f'href="/login/?next=/invitations/{token}/"' in page

    refused = Client().post(
        f"/invitations/{token}/",
        {"username": "victim-2", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
    )

    assert refused.status_code == 400 and "log in with it" in refused.content.decode()
    assert not Membership.objects.filter(tenant=here).exclude(user=admin).exists()


def test_another_account_cannot_accept_someone_elses_invitation(
    attacker_and_victim, api_client_for, mailoutbox
):
    """The token is the capability, but only for the account of the invited address."""
    here, _, admin, victim = attacker_and_victim
    _invite(api_client_for(admin, here), "someone-else@example.test")
    token = _token_from(mailoutbox[0])
    client = _login("victim")

    refused = client.post(f"/invitations/{token}/")

    assert refused.status_code == 403
    assert "another e-mail address" in refused.content.decode()
    assert not Membership.objects.filter(user=victim, tenant=here).exists()
    assert Invitation.objects.for_tenant(here).get().accepted_at is None


def _unusable(here: Any, api: Any, token: str, how: str) -> None:
    invitation = Invitation.objects.for_tenant(here).get()
    if how == "expired":
        Invitation.objects.for_tenant(here).update(expires_at=timezone.now())
    elif how == "revoked":
        assert api.post(f"/api/v1/invitations/{invitation.pk}/revoke/").status_code == 200
    else:
        assert _login("victim").post(f"/invitations/{token}/").status_code == 302


@pytest.mark.parametrize(
    ("how", "reason"),
    [("expired", "has expired"), ("revoked", "was withdrawn"), ("used", "has been used already")],
)
def test_expired_revoked_and_used_invitations_are_refused(
    attacker_and_victim, api_client_for, mailoutbox, how, reason
):
    here, _, admin, victim = attacker_and_victim
    api = api_client_for(admin, here)
    _invite(api, victim.email)
    token = _token_from(mailoutbox[0])
    _unusable(here, api, token, how)
    before = Membership.objects.filter(tenant=here).count()

    opened = _login("victim").get(f"/invitations/{token}/")
    posted = _login("victim").post(f"/invitations/{token}/")
    signup = Client().post(
        f"/invitations/{token}/",
        {"username": "late", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
    )

    for response in (opened, posted, signup):
        assert response.status_code == 410
        assert reason in response.content.decode()
    assert Membership.objects.filter(tenant=here).count() == before


def test_an_unknown_token_is_a_404():
    response = Client().get("/invitations/not-a-real-token/")
    assert response.status_code == 404 and "not valid" in response.content.decode()


def test_resending_replaces_the_link(attacker_and_victim, api_client_for, mailoutbox):
    here, _, admin, victim = attacker_and_victim
    api = api_client_for(admin, here)
    invitation_id = _invite(api, victim.email).json()["id"]
    first = _token_from(mailoutbox[0])

    resent = api.post(f"/api/v1/invitations/{invitation_id}/resend/")

    assert resent.status_code == 200 and resent.json()["send_count"] == 2
    second = _token_from(mailoutbox[1])
    client = _login("victim")
    assert client.get(f"/invitations/{first}/").status_code == 404
    assert client.post(f"/invitations/{second}/").status_code == 302
    assert (
        api.post(f"/api/v1/invitations/{invitation_id}/resend/").status_code == 400
    )  # accepted: nothing to send


def test_resends_are_capped(tenant_factory, member, api_client_for, mailoutbox):
    tenant = tenant_factory()
    api = api_client_for(member(tenant, Role.ADMIN), tenant)
    invitation_id = _invite(api, "someone@example.test").json()["id"]
    for _ in range(actions.MAX_INVITATION_SENDS - 1):
        assert api.post(f"/api/v1/invitations/{invitation_id}/resend/").status_code == 200
    refused = api.post(f"/api/v1/invitations/{invitation_id}/resend/")
    assert refused.status_code == 400 and "the most allowed" in refused.json()["detail"][0]
    assert len(mailoutbox) == actions.MAX_INVITATION_SENDS


def test_pending_invitations_per_tenant_are_capped(tenant_factory, member, api_client_for, monkeypatch):
    monkeypatch.setattr(invitation_actions, "MAX_PENDING_INVITATIONS", 2)
    tenant = tenant_factory("Capped")
    api = api_client_for(member(tenant, Role.ADMIN), tenant)
    first = _invite(api, "one@example.test").json()["id"]
    assert _invite(api, "two@example.test").status_code == 201

    refused = _invite(api, "three@example.test")

    assert refused.status_code == 400 and "2 pending invitations" in refused.json()["detail"][0]
    assert api.post(f"/api/v1/invitations/{first}/revoke/").status_code == 200
    assert _invite(api, "three@example.test").status_code == 201


def test_a_second_invitation_to_a_pending_address_or_a_member_is_refused(
    tenant_factory, member, api_client_for
):
    tenant = tenant_factory()
    admin = member(tenant, Role.ADMIN, email="admin@example.test")
    api = api_client_for(admin, tenant)
    assert _invite(api, "one@example.test").status_code == 201
    twice, colleague = _invite(api, "ONE@example.test"), _invite(api, "admin@example.test")
    assert twice.status_code == 400 and "pending invitation" in twice.json()["email"][0]
    assert colleague.status_code == 400 and "belongs to a member" in colleague.json()["email"][0]


def test_a_failed_mail_keeps_the_invitation_and_logs_no_link(
    tenant_factory, member, api_client_for, settings, caplog, mailoutbox
):
    tenant = tenant_factory()
    api = api_client_for(member(tenant, Role.ADMIN), tenant)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2  # nothing listens

    created = _invite(api, "someone@example.test")

    assert created.status_code == 201 and created.json()["emailed_at"] is None
    invitation = Invitation.objects.for_tenant(tenant).get()
    assert f"invitation {invitation.pk} could not be e-mailed" in caplog.text
    assert "invitations/" not in caplog.text
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    resent = api.post(f"/api/v1/invitations/{invitation.pk}/resend/")
    assert resent.status_code == 200 and resent.json()["emailed_at"] is not None
    assert len(mailoutbox) == 1


def test_the_members_page_invites_and_an_admin_revokes(tenant_factory, member, client_for, mailoutbox):
    tenant = tenant_factory()
    client = client_for(member(tenant, Role.ADMIN), tenant)
    assert client.post("/members/", {"email": "someone@example.test", "role": "staff"}).status_code == 302
    invitation = Invitation.objects.for_tenant(tenant).get()
    listing = client.get("/members/").content.decode()
    assert f'href="/members/invitations/{invitation.pk}/"' in listing

    client.post(f"/members/invitations/{invitation.pk}/", {"operation": "revoke"})

    invitation.refresh_from_db()
    assert invitation.revoked_at is not None
    assert AuditEntry.objects.for_tenant(tenant).filter(action="membership.invitation_revoked").count() == 1
    assert Client().get(f"/invitations/{_token_from(mailoutbox[0])}/").status_code == 410


def test_bad_addresses_are_a_400_with_the_reason(tenant_factory, member, api_client_for):
    tenant = tenant_factory()
    api = api_client_for(member(tenant, Role.ADMIN), tenant)
    for bad in ("not-an-address", "a@b\nBcc: x@y.test", "x" * 250 + "@example.test"):
        response = _invite(api, bad)
        assert response.status_code == 400 and response.json()["email"], bad
    assert not Invitation.objects.for_tenant(tenant).exists()


def test_the_operator_sees_invitations_read_only_without_their_digest(tenant_factory, user_factory, client):
    tenant = tenant_factory()
    invitation = actions.invite_member(
        actor=None, tenant=tenant, email="a@example.test", role="staff"
    ).invitation
    client.force_login(user_factory(is_staff=True, is_superuser=True))

    listing = client.get("/admin/tenancy/invitation/")
    detail = client.get(f"/admin/tenancy/invitation/{invitation.pk}/change/")

    assert listing.status_code == 200 and "a@example.test" in listing.content.decode()
    assert detail.status_code == 200 and invitation.token_sha256 not in detail.content.decode()
    assert client.get("/admin/tenancy/invitation/add/").status_code == 403
