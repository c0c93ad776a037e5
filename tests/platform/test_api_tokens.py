"""API tokens: hashed at rest, named, several per user, expiring, revocable, ended by a password change.

Clients keep sending `Authorization: Token <key>`; the key exists only in the
response that created it and in the client's hands.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from audit.models import AuditEntry
from tenancy.models import Role
from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
TOKENS_URL = "/api/v1/auth/tokens/"


def _issue(client: Client, username: str, password: str = TEST_PASSWORD, **extra: Any) -> dict[str, Any]:
    response = client.post(TOKEN_URL, {"username": username, "password": password, **extra})
    assert response.status_code == 200, response.content
    return response.json()


def _auth(key: str) -> dict[str, Any]:
    return {"HTTP_AUTHORIZATION": f"Token {key}"}


def _me(key: str) -> int:
    return Client().get("/api/v1/me/", **_auth(key)).status_code


def _database_text() -> str:
    """Every row of every table, as text: where a stored secret would show up."""
    rows: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            rows.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(rows)


def test_the_key_is_stored_nowhere_in_the_database(user_factory, client):
    user_factory(username="scripter")
    key = _issue(client, "scripter")["token"]
    assert _me(key) == 200
    assert key not in _database_text()


def test_several_named_tokens_are_listed_without_their_secrets(user_factory, client):
    user_factory(username="scripter")
    first = _issue(client, "scripter", name="nightly export")
    second = _issue(client, "scripter", name="laptop")
    assert first["token"] != second["token"]
    assert (_me(first["token"]), _me(second["token"])) == (200, 200)

    listing = Client().get(TOKENS_URL, **_auth(first["token"]))
    assert listing.status_code == 200
    rows = listing.json()["results"]
    assert [row["name"] for row in rows] == ["laptop", "nightly export"]
    assert {row["prefix"] for row in rows} == {first["prefix"], second["prefix"]}
    assert all(row["active"] and row["revoked_at"] is None for row in rows)
    assert {row["name"]: row["last_used_at"] is not None for row in rows} == {
        "laptop": True,
        "nightly export": True,
    }
    for issued in (first, second):
        secret = issued["token"].split("_", 2)[2]
        assert secret not in listing.content.decode()


def test_a_token_expires_after_the_configured_days(user_factory, client, settings):
    settings.LIKENESS_API_TOKEN_DAYS = 7
    user_factory(username="scripter")
    issued = _issue(client, "scripter")
    expires = dt.datetime.fromisoformat(issued["expires_at"])
    assert dt.timedelta(days=6, hours=23) < expires - timezone.now() <= dt.timedelta(days=7)
    assert _me(issued["token"]) == 200

    from tenancy.models import ApiToken

    # Time passes: the expiry is now behind us.
    ApiToken.objects.filter(pk=issued["id"]).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = Client().get("/api/v1/me/", **_auth(issued["token"]))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_a_revoked_token_is_refused_and_only_its_owner_can_revoke_it(user_factory, client):
    user_factory(username="owner")
    user_factory(username="other")
    mine, spare = _issue(client, "owner"), _issue(client, "owner")
    theirs = _issue(client, "other")

    foreign = Client().delete(f"{TOKENS_URL}{mine['id']}/", **_auth(theirs["token"]))
    missing = Client().delete(f"{TOKENS_URL}2147483000/", **_auth(theirs["token"]))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    assert _me(mine["token"]) == 200

    assert Client().delete(f"{TOKENS_URL}{mine['id']}/", **_auth(spare["token"])).status_code == 204
    refused = Client().get("/api/v1/me/", **_auth(mine["token"]))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert _me(spare["token"]) == 200
    assert _me("lk_00000000_not-a-real-key") == 401


def test_a_token_cannot_create_tokens_but_a_logged_in_session_can(user_factory, client, settings):
    user = user_factory(username="scripter")
    key = _issue(client, "scripter")["token"]
    by_token = Client().post(TOKENS_URL, {"name": "sneaky"}, **_auth(key))
    assert by_token.status_code == 403
    assert "password" in by_token.json()["detail"]

    session = Client()
    session.force_login(user)
    created = session.post(TOKENS_URL, {"name": "ci", "days": 3}, content_type="application/json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["name"] == "ci" and body["token"].startswith(f"lk_{body['prefix']}_")
    assert _me(body["token"]) == 200
    too_long = session.post(TOKENS_URL, {"name": "ci", "days": 10_000}, content_type="application/json")
    assert (
        too_long.status_code == 400
        and f"1 to {settings.LIKENESS_API_TOKEN_DAYS} days" in too_long.json()["detail"][0]
    )
    assert session.post(TOKENS_URL, {"name": ""}, content_type="application/json").status_code == 400


def test_active_tokens_per_user_are_limited(user_factory, client):
    from tenancy.actions import MAX_ACTIVE_API_TOKENS

    session = Client()
    session.force_login(user_factory(username="scripter"))
    keys = [
        session.post(TOKENS_URL, {"name": f"job {n}"}, content_type="application/json").json()["token"]
        for n in range(MAX_ACTIVE_API_TOKENS)
    ]
    refused = client.post(TOKEN_URL, {"username": "scripter", "password": TEST_PASSWORD})
    assert refused.status_code == 400
    assert "revoke one" in refused.json()["detail"][0]
    oldest = Client().get(TOKENS_URL, **_auth(keys[0])).json()["results"][-1]
    assert oldest["name"] == "job 0"
    assert Client().delete(f"{TOKENS_URL}{oldest['id']}/", **_auth(keys[1])).status_code == 204
    assert client.post(TOKEN_URL, {"username": "scripter", "password": TEST_PASSWORD}).status_code == 200


def test_changing_the_password_revokes_every_token_and_ends_other_sessions(user_factory, client):
    user = user_factory(username="changer")
    keys = [_issue(client, "changer")["token"] for _ in range(2)]
    here, elsewhere = Client(), Client()
    for browser in (here, elsewhere):
        assert browser.post("/login/", {"username": "changer", "password": TEST_PASSWORD}).status_code == 302

    changed = here.post(
        "/account/password/",
        {
            "old_password": TEST_PASSWORD,
            "new_password1": "a-new-long-passphrase",
            "new_password2": "a-new-long-passphrase",
        },
    )
    assert changed.status_code == 302
    assert here.get("/account/").status_code == 200  # this session continues
    assert elsewhere.get("/account/").status_code == 302  # every other one ends
    assert [_me(key) for key in keys] == [401, 401]

    # Any other path that changes the stored password does the same (a shell, `changepassword`).
    key = _issue(client, "changer", password="a-new-long-passphrase")["token"]
    user.refresh_from_db()
    user.set_password("yet-another-passphrase")
    user.save()
    assert _me(key) == 401
    # Saving the user without touching the password revokes nothing.
    key = _issue(client, "changer", password="yet-another-passphrase")["token"]
    user.refresh_from_db()
    user.first_name = "Renamed"
    user.save()
    assert _me(key) == 200


def test_token_lifecycle_is_audited_in_each_tenant_without_the_secret(tenant_factory, member, client):
    first, second, unrelated = tenant_factory(), tenant_factory(), tenant_factory()
    user = member(first, Role.STAFF, username="audited")
    member(second, Role.LEGAL_REVIEWER, user=user)
    issued = _issue(client, "audited", name="reporting")
    assert Client().delete(f"{TOKENS_URL}{issued['id']}/", **_auth(issued["token"])).status_code == 204
    user.set_password("changed-passphrase-1")
    user.save()
    for tenant in (first, second):
        entries = list(AuditEntry.objects.for_tenant(tenant).order_by("seq"))
        assert [entry.action for entry in entries] == [
            "auth.token_issued",
            "auth.token_revoked",
            "auth.password_changed",
        ]
        assert entries[0].payload["token_id"] == issued["id"] and entries[0].payload["name"] == "reporting"
        assert entries[1].payload == {"token_ids": [issued["id"]], "reason": "revoked"}
        assert entries[2].payload == {"revoked_token_ids": []}
        assert all(issued["token"] not in str(entry.payload) for entry in entries)
    assert AuditEntry.objects.for_tenant(unrelated).count() == 0


def test_the_account_page_shows_a_new_secret_once_and_revokes(user_factory, client_for):
    owner, other = user_factory(username="pageowner"), user_factory()
    browser = client_for(owner)
    created = browser.post("/account/", {"name": "deploy script", "days": 30})
    assert created.status_code == 200
    from tenancy.models import ApiToken

    token = ApiToken.objects.get(user=owner)
    secret = created.context["new_key"]
    assert secret in created.content.decode() and _me(secret) == 200
    listing = browser.get("/account/").content.decode()
    assert "deploy script" in listing and token.prefix in listing and secret not in listing

    other_browser = client_for(other)
    assert other_browser.post(f"/account/tokens/{token.pk}/revoke/").status_code == 404
    assert _me(secret) == 200
    assert browser.post(f"/account/tokens/{token.pk}/revoke/").status_code == 302
    assert _me(secret) == 401


def test_plaintext_tokens_of_the_previous_scheme_are_dropped(db):
    """The upgrade removes DRF's authtoken table, whose keys sat in plain text in every backup."""
    from tenancy.migration_ops import drop_plaintext_authtoken_table

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id integer)")
        cursor.execute("INSERT INTO authtoken_token VALUES ('0123456789abcdef0123456789abcdef01234567', 1)")
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES ('authtoken', '0001_initial', %s)",
            [timezone.now()],
        )
    with connection.schema_editor() as editor:
        drop_plaintext_authtoken_table(None, editor)
    with connection.cursor() as cursor:
        assert "authtoken_token" not in connection.introspection.table_names(cursor)
        cursor.execute("SELECT count(*) FROM django_migrations WHERE app = 'authtoken'")
        assert cursor.fetchone() == (0,)
    with connection.schema_editor() as editor:
        drop_plaintext_authtoken_table(None, editor)  # a database that never had it: nothing to do


def test_the_operator_revokes_every_token_of_a_user(tenant_factory, member, client):
    from django.core.management import CommandError, call_command

    tenant = tenant_factory()
    member(tenant, Role.STAFF, username="departing")
    keys = [_issue(client, "departing")["token"] for _ in range(2)]
    call_command("revoke_api_tokens", "departing")
    assert [_me(key) for key in keys] == [401, 401]
    entry = AuditEntry.objects.for_tenant(tenant).latest("seq")
    assert (entry.action, entry.actor_id, entry.payload["reason"]) == ("auth.token_revoked", None, "operator")
    assert len(entry.payload["token_ids"]) == 2
    with pytest.raises(CommandError, match="No user"):
        call_command("revoke_api_tokens", "ghost")
