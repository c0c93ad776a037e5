"""Login brute force: lockouts per account and per client address (django-axes), trusted proxies, and
failed logins that cannot flood a tenant's audit log.

Every request here goes through the real middleware stack (Django's test
client, and its ASGI twin for the code path the ASGI server takes) against PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client, RequestFactory

from audit.models import AuditEntry
from tenancy.models import Role
from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
TOKEN_URL = "/api/v1/auth/token/"
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')
CSP_NONCE = re.compile(r' nonce="[^"]*"')  # per response, like the CSRF token
_addresses = itertools.count(1)


def _fresh_address() -> str:
    n = next(_addresses)
    return f"198.51.{n // 250}.{n % 250 + 1}"


def _trust_proxies(settings: Any, count: int) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": count}


def _login(client: Client, username: str, password: str, **headers: Any) -> Any:
    return client.post("/login/", {"username": username, "password": password}, **headers)


def _logged_in(client: Client) -> bool:
    return client.get("/account/").status_code == 200


def test_forty_wrong_passwords_lock_the_account_and_then_the_right_one_is_refused(user_factory):
    user_factory(username="target")
    browser = Client()
    statuses = {_login(browser, "target", f"guess-{n}").status_code for n in range(40)}
    assert statuses == {200, 429}

    refused = _login(browser, "target", TEST_PASSWORD)
    assert refused.status_code == 429
    assert "Too many failed logins" in refused.content.decode()
    assert refused["Retry-After"]
    assert not _logged_in(browser)
    api = Client().post(TOKEN_URL, {"username": "target", "password": TEST_PASSWORD})
    assert api.status_code == 429 and "Too many failed logins" in api.json()["detail"]


def test_the_lockout_ends_after_the_cooloff(user_factory, settings):
    from axes.models import AccessAttempt

    user_factory(username="patient")
    browser = Client()
    for n in range(settings.LIKENESS_LOGIN_FAILURE_LIMIT):
        _login(browser, "patient", f"guess-{n}")
    assert _login(browser, "patient", TEST_PASSWORD).status_code == 429
    # The cool-off passes: the recorded failures are now older than the window.
    AccessAttempt.objects.update(
        attempt_time=dt.datetime.now(dt.UTC)
        - dt.timedelta(minutes=settings.LIKENESS_LOGIN_COOLOFF_MINUTES + 1)
    )
    assert _login(browser, "patient", TEST_PASSWORD).status_code == 302
    assert _logged_in(browser)


def test_the_lockout_holds_on_the_asgi_path(user_factory):
    """Under the ASGI server the middleware runs asynchronously: a different code path in django-axes."""
    user_factory(username="asgi-target")
    client = AsyncClient()
    post = async_to_sync(client.post)
    for n in range(40):
        post("/login/", {"username": "asgi-target", "password": f"guess-{n}"})
    refused = post("/login/", {"username": "asgi-target", "password": TEST_PASSWORD})
    assert refused.status_code == 429
    assert "Too many failed logins" in refused.content.decode()


def test_a_rotating_forwarded_header_does_not_escape_the_per_address_limit(user_factory):
    """With no trusted proxy (the default) X-Forwarded-For is ignored: the peer address counts."""
    user_factory(username="bystander")
    attacker = Client()
    for n in range(40):
        _login(attacker, f"sprayed-{n}", "password1", HTTP_X_FORWARDED_FOR=_fresh_address())
    refused = _login(attacker, "bystander", TEST_PASSWORD, HTTP_X_FORWARDED_FOR=_fresh_address())
    assert refused.status_code == 429


def test_the_token_endpoint_rate_counts_the_peer_not_a_forged_header(settings):
    """DRF's own request rate on the token endpoint, with axes' lockouts out of the way."""
    settings.AXES_ENABLED = False
    api = Client()
    statuses = [
        api.post(
            TOKEN_URL, {"username": f"nobody-{n}", "password": "x"}, HTTP_X_FORWARDED_FOR=_fresh_address()
        ).status_code
        for n in range(25)
    ]
    assert statuses[:20] == [400] * 20
    assert statuses[20:] == [429] * 5


def test_the_per_account_limit_holds_across_addresses(user_factory, settings):
    _trust_proxies(settings, 1)
    user_factory(username="distributed")
    for n in range(40):
        _login(Client(), "distributed", f"guess-{n}", HTTP_X_FORWARDED_FOR=_fresh_address())
    fresh = Client()
    assert (
        _login(fresh, "distributed", TEST_PASSWORD, HTTP_X_FORWARDED_FOR=_fresh_address()).status_code == 429
    )
    assert not _logged_in(fresh)


def test_behind_a_trusted_proxy_each_client_address_is_limited_on_its_own(user_factory, settings):
    """One proxy: the right-most X-Forwarded-For entry (the one the proxy appended) is the client."""
    _trust_proxies(settings, 1)
    user_factory(username="colleague")
    noisy, quiet = _fresh_address(), _fresh_address()
    for n in range(40):
        # Whatever the client puts on the left, the proxy's own entry on the right identifies it.
        _login(Client(), f"sprayed-{n}", "password1", HTTP_X_FORWARDED_FOR=f"{_fresh_address()}, {noisy}")
    assert _login(Client(), "colleague", TEST_PASSWORD, HTTP_X_FORWARDED_FOR=noisy).status_code == 429
    assert _login(Client(), "colleague", TEST_PASSWORD, HTTP_X_FORWARDED_FOR=quiet).status_code == 302


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "203.0.113.5", "192.0.2.1"),
        (1, "203.0.113.5, 198.51.100.7", "198.51.100.7"),
        (2, "203.0.113.5, 198.51.100.7, 198.51.100.8", "198.51.100.7"),
        (1, None, "192.0.2.1"),
        (1, "203.0.113.5, not-an-address", "192.0.2.1"),
    ],
)
def test_the_client_address_trusts_exactly_the_configured_proxies(settings, proxies, forwarded, expected):
    from tenancy.throttling import client_address

    _trust_proxies(settings, proxies)
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1", **headers)
    assert client_address(request) == expected


def test_the_lockout_does_not_tell_whether_the_account_exists(user_factory, settings):
    _trust_proxies(settings, 1)
    user_factory(username="existing")
    answers = {}
    for username in ("existing", "ghost-user"):
        address = _fresh_address()
        for n in range(settings.LIKENESS_LOGIN_FAILURE_LIMIT):
            _login(Client(), username, f"guess-{n}", HTTP_X_FORWARDED_FOR=address)
        response = _login(Client(), username, "guess-again", HTTP_X_FORWARDED_FOR=address)
        answers[username] = (
            response.status_code,
            CSP_NONCE.sub("", CSRF.sub("", response.content.decode().replace(username, "U"))),
        )
    assert answers["existing"] == answers["ghost-user"]
    assert answers["existing"][0] == 429


def test_a_hundred_failures_add_a_bounded_number_of_audit_entries(tenant_factory, member, settings):
    first, second = tenant_factory(), tenant_factory()
    user = member(first, Role.STAFF, username="flooded")
    member(second, Role.ADMIN, user=user)
    browser = Client()
    for n in range(100):
        _login(browser, "flooded", f"guess-{n}")
    for tenant in (first, second):
        entries = list(AuditEntry.objects.for_tenant(tenant).order_by("seq"))
        assert [entry.action for entry in entries] == ["auth.login_failed", "auth.lockout"]
        assert all(entry.actor_id is None and entry.target_id == str(user.pk) for entry in entries)
        assert entries[1].payload == {
            "failures": settings.LIKENESS_LOGIN_FAILURE_LIMIT,
            "cooloff_minutes": settings.LIKENESS_LOGIN_COOLOFF_MINUTES,
        }
        assert "guess" not in str([entry.payload for entry in entries])


def _settings_subprocess(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIKENESS_")}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEBUG": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_trusted_proxy_count_comes_from_the_environment():
    show = (
        "from django.test import RequestFactory; from tenancy.throttling import client_address; "
        "from rest_framework.settings import api_settings; "
        "request = RequestFactory().get("
        "'/', REMOTE_ADDR='192.0.2.1', HTTP_X_FORWARDED_FOR='203.0.113.5, 198.51.100.7'); "
        "print(api_settings.NUM_PROXIES, client_address(request))"
    )
    assert _settings_subprocess(show).stdout.split() == ["0", "192.0.2.1"]
    assert _settings_subprocess(show, LIKENESS_TRUSTED_PROXIES="1").stdout.split() == ["1", "198.51.100.7"]
    for bad in ("-1", "many"):
        refused = _settings_subprocess("", LIKENESS_TRUSTED_PROXIES=bad)
        assert refused.returncode != 0 and "LIKENESS_TRUSTED_PROXIES" in refused.stderr


def _test_database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_the_token_endpoint_rate_is_shared_by_every_server_process(settings):
    """The server runs several processes (LIKENESS_WEB_WORKERS): a rate counted in one process's
    memory would let a client through N times the limit by spreading its requests."""
    settings.AXES_ENABLED = False
    api = Client()
    statuses = [
        api.post(TOKEN_URL, {"username": f"nobody-{n}", "password": "x"}).status_code for n in range(20)
    ]
    assert statuses == [400] * 20
    other_process = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup()\n"
            "from django.conf import settings; settings.AXES_ENABLED = False\n"
            "from django.test import Client\n"
            "client = Client(HTTP_HOST='127.0.0.1')\n"
            f"print(client.post({TOKEN_URL!r}, {{'username': 'nobody-x', 'password': 'x'}}).status_code)",
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": _test_database_url(), "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert other_process.returncode == 0, other_process.stderr[-2000:]
    assert other_process.stdout.strip().splitlines()[-1] == "429"
