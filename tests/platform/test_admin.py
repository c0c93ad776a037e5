"""The Django admin is a read-only window: no page shows, creates or changes anyone's secret.

A superuser without a membership must not be able to act as a tenant user, so
no admin may write (writes there would bypass the actions and their audit),
and no page may carry a password hash, a password form or an API token.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client, RequestFactory

from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(user_factory):
    return user_factory(username="operator", is_staff=True, is_superuser=True)


def test_no_registered_admin_can_add_change_or_delete(operator):
    request = RequestFactory().get("/admin/")
    request.user = operator
    writable = {
        model._meta.label: [
            verb
            for verb in ("add", "change", "delete")
            if getattr(model_admin, f"has_{verb}_permission")(request)
        ]
        for model, model_admin in admin.site._registry.items()
    }
    assert {label: verbs for label, verbs in writable.items() if verbs} == {}
    assert "auth.User" in writable  # the check above covered the account admin


def test_no_admin_page_shows_another_users_secrets(operator, user_factory, client):
    victim = user_factory(username="victim")
    key = client.post("/api/v1/auth/token/", {"username": "victim", "password": TEST_PASSWORD}).json()[
        "token"
    ]
    victim.refresh_from_db()
    algorithm, *_, digest = victim.password.split("$")

    browser = Client()
    browser.force_login(operator)
    pages = {
        url: browser.get(url)
        for url in (
            "/admin/",
            "/admin/auth/user/",
            f"/admin/auth/user/{victim.pk}/change/",
            f"/admin/auth/user/?q={victim.username}",
        )
    }
    assert {url: response.status_code for url, response in pages.items()} == dict.fromkeys(pages, 200)
    for url, response in pages.items():
        html = response.content.decode()
        assert victim.password not in html and digest not in html, url
        assert key not in html and key.split("_", 2)[2] not in html, url
        assert "password/" not in html and "Reset password" not in html, url
        assert "hash" not in html.lower(), url
        assert "token" not in html.lower().replace("csrfmiddlewaretoken", ""), url
    assert algorithm  # the hash has the shape the checks above took apart

    for url in (
        f"/admin/auth/user/{victim.pk}/password/",
        "/admin/auth/user/add/",
        "/admin/authtoken/tokenproxy/",
        "/admin/authtoken/token/add/",
    ):
        response = browser.get(url, follow=True)
        assert response.status_code in (200, 403, 404), url
        assert 'type="password"' not in response.content.decode(), url
        assert key not in response.content.decode(), url
    changed = browser.post(
        f"/admin/auth/user/{victim.pk}/password/", {"password1": "taken-over-1", "password2": "taken-over-1"}
    )
    assert changed.status_code in (302, 403, 404)  # 302: to the change page of an "object" 3/password
    victim.refresh_from_db()
    assert victim.check_password(TEST_PASSWORD)
