"""Shared test set-up and fixtures for every area of the suite.

Environment: DJANGO_DEBUG=1 (so no secret key is needed) unless the caller set
it; DATABASE_URL and REDIS_URL come from the environment (PostgreSQL and Redis
in CI and `make test`; SQLite when DATABASE_URL is unset, where PostgreSQL-only
tests skip with a reason). LIKENESS_STORAGE_ROOT is always a temporary folder
of the session, removed at its end.

Reusable fixtures: `tenant_factory`, `user_factory`, `member` (a user with a
role in a tenant), `client_for` (a logged-in Django test client with an active
tenant) and `api_client_for` (the same for DRF).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def _redis_database_of_this_process() -> None:
    """Under pytest-xdist each test process gets a Redis database of its own (the given one, then the
    ones below it): Celery queues, the channel layer and throttle counts of two processes must never
    meet, or one process's worker would run another's jobs against the wrong test database.
    pytest-django already gives each process a test database of its own."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or "REDIS_URL" not in os.environ:
        return
    base, _, number = os.environ["REDIS_URL"].rpartition("/")
    database = int(number or 0) - int(worker[2:])
    if database < 0:
        raise RuntimeError(f"REDIS_URL's database {number} leaves none for test process {worker}")
    os.environ["REDIS_URL"] = f"{base}/{database}"
    os.environ.pop("LIKENESS_CACHE_URL", None)


_redis_database_of_this_process()
# Tests store ciphertexts; none may land in a real storage root (var/storage by
# default, or whatever the caller's shell exports). Set before the settings load,
# so the session and every process a test starts store in this folder instead.
os.environ["LIKENESS_STORAGE_ROOT"] = tempfile.mkdtemp(prefix="likeness-test-storage-")
# Likewise the audit log's signed checkpoints (the development default is a file under var/), for the
# processes tests start; in-process, each test has a file of its own (audit_anchor_file).
os.environ["LIKENESS_AUDIT_ANCHOR_SINKS"] = f"file:{os.environ['LIKENESS_STORAGE_ROOT']}/audit-anchors.jsonl"
os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("LIKENESS_LOG_LEVEL", "WARNING")
# Four engineers share two cores: torch (imported later, by the tests that need
# it) reads these when it starts, so every test process stays on one thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import django  # noqa: E402 (the environment above must be set first)
import pytest  # noqa: E402

django.setup()

SESSION_STORAGE_ROOT = os.environ["LIKENESS_STORAGE_ROOT"]

from django.conf import settings  # noqa: E402

# Password hashing at production strength costs ~0.3 s per user on these cores;
# tests create hundreds of users and do not test the hasher.
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Fixtures shared across areas live in modules of tests/fixtures (Saleor's layout), registered here.
pytest_plugins = [
    "tests.fixtures.consent",
    "tests.fixtures.models",
    "tests.fixtures.workers",
    "tests.fixtures.stack",
    "tests.fixtures.scale",
]

_counter = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    """pytest-xdist's test processes inherit this process's environment: without the settings module
    in it, pytest-django leaves Django to this file there too, so each process's own storage folder and
    Redis database above are in its settings (pytest-django would load them first from an inherited
    DJANGO_SETTINGS_MODULE)."""
    if getattr(config.option, "numprocesses", None) and "PYTEST_XDIST_WORKER" not in os.environ:
        os.environ.pop("DJANGO_SETTINGS_MODULE", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Removed only when pytest ends, because processes a test started may write there until then."""
    shutil.rmtree(SESSION_STORAGE_ROOT, ignore_errors=True)


@pytest.fixture(autouse=True)
def audit_anchor_file(settings: Any, tmp_path: Path) -> Path:
    """Each test's signed audit checkpoints go to a file of its own (verification reads them back):
    a checkpoint of one test's tenant must never meet another test's tenant that got the same id."""
    path = tmp_path / "audit-anchors.jsonl"
    settings.LIKENESS_AUDIT_ANCHOR_SINKS = [f"file:{path}"]
    return path


TEST_PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def fresh_request_rates() -> None:
    """DRF's throttles count requests in the default cache (Redis, shared by every server process):
    its keys are removed before each test, so that one test's logins never throttle the next one's.

    Only the cache's own keys go: the same Redis database carries the test's Celery queues and
    channel layer. django-axes' lockouts live in the database and go with each test's transaction
    or flush.
    """
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    default = caches["default"]
    if not isinstance(default, RedisCache):
        pytest.fail(f"the default cache is {type(default).__name__}: reset its throttle counts here")
    import redis

    client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    stale = list(client.scan_iter(match=f"{default.key_prefix}:*", count=1000))
    if stale:
        client.delete(*stale)


@pytest.fixture
def tenant_factory(db: None) -> Callable[..., Any]:
    """Create a tenant row directly (no audit entry; tenancy.actions.create_tenant is the audited path)."""
    from tenancy.models import Tenant

    def create(name: str | None = None, slug: str | None = None, **settings: Any) -> Tenant:
        n = next(_counter)
        return Tenant.objects.create(
            name=name or f"Brand {n}", slug=slug or f"brand-{n}", settings=settings or {}
        )

    return create


@pytest.fixture
def user_factory(db: None) -> Callable[..., Any]:
    from django.contrib.auth import get_user_model

    def create(username: str | None = None, password: str = TEST_PASSWORD, **extra: Any) -> Any:
        name = username or f"user{next(_counter)}"
        extra.setdefault("email", f"{name}@example.test")
        return get_user_model().objects.create_user(username=name, password=password, **extra)

    return create


@pytest.fixture
def member(user_factory: Callable[..., Any]) -> Callable[..., Any]:
    """`member(tenant, role)` -> a new user holding `role` (a Role or its value) in `tenant`.

    The membership row is created directly (no audit entry), so a test's audit
    log holds only what the test itself does through actions.
    """
    from tenancy.models import Membership, Role

    def create(tenant: Any, role: Role | str = Role.STAFF, user: Any = None, **user_kwargs: Any) -> Any:
        user = user or user_factory(**user_kwargs)
        Membership.objects.create(user=user, tenant=tenant, role=Role(role))
        return user

    return create


@pytest.fixture
def client_for(db: None) -> Callable[..., Any]:
    """`client_for(user, tenant=None)` -> a logged-in django.test.Client with `tenant` active."""
    from django.test import Client

    from tenancy.context import SESSION_KEY

    def create(user: Any, tenant: Any = None) -> Client:
        client = Client()
        client.force_login(user)
        if tenant is not None:
            session = client.session
            session[SESSION_KEY] = tenant.pk
            session.save()
        return client

    return create


@pytest.fixture
def api_client_for(db: None) -> Callable[..., Any]:
    """`api_client_for(user, tenant=None)` -> a DRF APIClient authenticated as `user` in `tenant`."""
    from rest_framework.test import APIClient

    from tenancy.api import TENANT_HEADER

    def create(user: Any, tenant: Any = None) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        if tenant is not None:
            client.credentials(**{f"HTTP_{TENANT_HEADER.upper().replace('-', '_')}": tenant.slug})
        return client

    return create


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> Any:
    """Debian's headless Chromium, driven by Playwright's sync API (its own browser download is blocked).

    Playwright runs an event loop in the test thread, which Django's ORM takes
    for async context; the tests' own ORM calls are synchronous, so the guard
    is lifted for the module that uses the browser, and only for it: module
    scope also ends Playwright's loop before other modules' tests run
    (async_to_sync refuses to run beside a running loop).
    """
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium: Any) -> Any:
    """A fresh browser context (own cookies) and page per test.

    Whatever the browser refuses under the Content-Security-Policy (an inline
    style or handler a template gained) fails the test that loaded it.
    """
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    refused: list[str] = []
    page.on(
        "console",
        lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None,
    )
    yield page
    context.close()
    assert refused == [], refused
