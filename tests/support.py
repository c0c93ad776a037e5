"""Helpers shared by tests of every area (import from tests.support)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape
from typing import Any

import pytest

IS_POSTGRESQL = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))

requires_postgresql = pytest.mark.skipif(
    not IS_POSTGRESQL,
    reason="needs PostgreSQL (set DATABASE_URL=postgres://...; CI and `make test` run on it)",
)


def redis_reachable() -> bool:
    """Whether the Redis at settings.REDIS_URL answers (channel layer, Celery broker)."""
    import redis
    from django.conf import settings

    try:
        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


requires_redis = pytest.mark.skipif(
    not redis_reachable(), reason="needs Redis at REDIS_URL (CI and `make test` provide one)"
)


def tamper_audit(sql: str, params: list[Any]) -> None:
    """Raw SQL as the table owner, with the audit tables' append-only triggers off on PostgreSQL.

    What an attacker who owns the database can do; the tamper tests show what verification sees.
    """
    from django.db import connection

    triggers = (
        ("audit_auditentry", "audit_entry_append_only"),
        ("audit_auditchainhead", "audit_chain_head_forward_only"),
    )
    with connection.cursor() as cursor:
        if IS_POSTGRESQL:
            # Fire the deferred foreign-key checks of this test's inserts, or ALTER TABLE refuses.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for table, trigger in triggers:
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        cursor.execute(sql, params)
        if IS_POSTGRESQL:
            for table, trigger in triggers:
                cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")


S3_CREDENTIALS = {
    "aws_access_key_id": "test-key",
    "aws_secret_access_key": "test-secret",
    "region_name": "us-east-1",
}


@contextmanager
def moto_s3(*buckets: str) -> Iterator[str]:
    """moto's S3 server over real HTTP on a free port, with these buckets; yields its endpoint URL.

    No S3 is reachable from here: boto3 and django-storages run their real code against it.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, **S3_CREDENTIALS)
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()


# A Celery worker for tests that need a real one: one process, no pool, quiet, no cluster chatter.
TEST_WORKER_ARGS = [
    "--pool",
    "solo",
    "--concurrency",
    "1",
    "--loglevel",
    "WARNING",
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
]


def socket_headers(client: Any) -> list[tuple[bytes, bytes]]:
    """The headers a browser sends when it opens a socket of this site, with `client`'s session cookie."""
    from django.conf import settings

    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    return [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
    ]


# --- browser checks (Playwright pages) ---------------------------------------------------------------
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

_UNLABELLED_FIELDS = """
() => [...document.querySelectorAll("input, select, textarea")]
  .filter((field) => field.type !== "hidden" && field.type !== "submit" && field.type !== "button")
  .filter((field) => {
    if (field.getAttribute("aria-label") || field.getAttribute("aria-labelledby")) return false;
    if (field.closest("label")) return false;
    return !(field.id && document.querySelector(`label[for="${CSS.escape(field.id)}"]`));
  })
  .map((field) => field.outerHTML.slice(0, 120))
"""


def unlabelled_fields(page: Any) -> list[str]:
    """Form fields a screen reader cannot name (no label, aria-label or aria-labelledby): should be none."""
    return list(page.evaluate(_UNLABELLED_FIELDS))


def horizontal_overflow(page: Any) -> int:
    """How many CSS pixels the document is wider than the viewport (0: no sideways scrolling)."""
    return int(page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth"))


def overflowing_elements(page: Any, limit: int = 5) -> list[str]:
    """The innermost elements that reach past the viewport's right edge (outside any scrolling box, such
    as the header's menu): what a failed overflow check names, so that the message says what to fix."""
    script = """(limit) => {
        const scrolls = (el) => ["auto", "scroll", "hidden"].includes(getComputedStyle(el).overflowX);
        const inScroller = (el) => {
            for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
                if (scrolls(up)) return true;
            }
            return false;
        };
        const past = (el) => el.getBoundingClientRect().right > window.innerWidth + 0.5 && !inScroller(el);
        const classes = (el) => typeof el.className === "string" && el.className
            ? "." + el.className.replaceAll(" ", ".") : "";
        const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + classes(el);
        return [...document.body.querySelectorAll("*")]
            .filter((el) => past(el) && ![...el.children].some(past))
            .slice(0, limit)
            .map((el) => `${name(el)} right=${Math.round(el.getBoundingClientRect().right)}: `
                + el.textContent.trim().slice(0, 60));
    }"""
    return list(page.evaluate(script, limit))


def log_in(page: Any, base_url: str, username: str) -> None:
    """Log in through the dashboard's own login form, as a person does, and land on the overview."""
    from tests.conftest import TEST_PASSWORD

    page.goto(f"{base_url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def page_link(html: str, rel: str) -> str:
    """The href of a dashboard page's `rel="next"` or `rel="prev"` link (the pager's), unescaped."""
    found = re.search(rf'<a href="([^"]+)" rel="{rel}"', html)
    assert found, f'the page has no rel="{rel}" link'
    return unescape(found.group(1))
