"""What the platform benchmarks share: a fresh PostgreSQL database of their own, Django set up on it.

The platform benchmarks (bench/platform_load.py, bench/audit_throughput.py) write tens of
thousands of rows, so each works in a database of its own, dropped and created at the start.
Only a database whose name contains "bench" is ever dropped: a mistyped --database-url must
not cost anyone the product's data.
"""

from __future__ import annotations

import os
import platform
import secrets
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgres://likeness:likeness@127.0.0.1:5432/likeness_bench_platform"


def bench_database_url(name: str) -> str:
    """The default URL with another database: each benchmark its own, so two can run at once."""
    return urlunsplit(urlsplit(DEFAULT_DATABASE_URL)._replace(path=f"/{name}"))


def database_name(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    if not name or "bench" not in name:
        raise SystemExit(
            f"refusing to drop and re-create database {name!r}: its name must contain 'bench' "
            "(the benchmark starts from an empty database of its own)"
        )
    return name


def fresh_database(url: str) -> None:
    """Drop and create the database at `url` (through the server's `postgres` database)."""
    import psycopg
    from psycopg import sql

    name = database_name(url)
    maintenance = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def bench_environment(url: str) -> dict[str, str]:
    """Production settings (DEBUG off: no query log, no debug toolbar of costs), plain HTTP on loopback.

    The secrets are made up per run: nothing the benchmark writes is worth keeping. Mail stays
    in memory (the seeding reads the signing links from it, as the subject would from theirs).
    """
    # Made once per run and handed down: the seeding processes and the servers must share them.
    run_secret = os.environ.get("LIKENESS_BENCH_RUN_SECRET") or secrets.token_urlsafe(48)
    return {
        "LIKENESS_BENCH_RUN_SECRET": run_secret,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": run_secret,
        "LIKENESS_MASTER_KEY": f"bench-master-{run_secret}",
        "LIKENESS_AUDIT_ANCHOR_SINKS": f"file:{REPO_ROOT / 'var' / 'bench' / 'audit-anchors.jsonl'}",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    }


def setup_django(url: str, *, migrate: bool) -> None:
    """Point this process (and the servers it starts, through the environment) at `url`."""
    os.environ.update(bench_environment(url))
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)


def machine() -> str:
    """One line naming where the figures were taken: they mean nothing without it."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (server,) = cursor.fetchone() or ("?",)
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {server}, {datetime.now().date().isoformat()}, load average at start "
        f"{os.getloadavg()[0]:.1f}"
    )


def bench_tenant(name: str, slug: str) -> tuple[Any, Any, Any, Any]:
    """(tenant, admin, staff, consent text): a tenant set up as seed_demo sets one up, through the actions."""
    from django.contrib.auth import get_user_model

    from consent import actions as consent
    from tenancy import actions
    from tenancy.management.commands.seed_demo import DEFAULT_CONSENT_NAME, DEFAULT_CONSENT_TEXT
    from tenancy.models import Role

    tenant = actions.create_tenant(name=name, slug=slug)
    users = get_user_model()._default_manager
    admin = users.create_user(username=f"{slug}-admin", email=f"admin@{slug}.invalid")
    staff = users.create_user(username=f"{slug}-staff", email=f"staff@{slug}.invalid")
    actions.add_member(tenant=tenant, user=admin, role=Role.ADMIN)
    actions.add_member(tenant=tenant, user=staff, role=Role.STAFF)
    consent.publish_retention_schedule(
        actor=admin,
        tenant=tenant,
        title=consent.BIPA_DEFAULT_TITLE,
        years_after_last_interaction=consent.MAX_YEARS_AFTER_LAST_INTERACTION,
        days_after_purpose_satisfied=0,
    )
    template = consent.publish_consent_template(
        actor=admin, tenant=tenant, name=DEFAULT_CONSENT_NAME, body=DEFAULT_CONSENT_TEXT
    )
    return tenant, admin, staff, template


def signed_subject(
    tenant: Any, staff: Any, template: Any, n: int, expires_at: datetime | None = None
) -> tuple[Any, Any, Any]:
    """(subject, link, record): subject n created by staff, e-mailed a link, and signed by the subject
    with the token from that e-mail (the locmem backend's mailbox, emptied first)."""
    from django.core import mail

    from consent import actions as consent
    from consent.models import Purpose
    from tests.consent.mailbox import delivered_token

    name = f"Subject {n:06d}"
    subject = consent.create_subject(
        actor=staff, tenant=tenant, display_name=name, contact_email=f"s{n}@{tenant.slug}.invalid"
    )
    mail.outbox = []
    purposes = [purpose.value for purpose in Purpose]
    link = consent.send_consent_link(
        actor=staff,
        subject=subject,
        template=template,
        purposes=purposes,
        intended_uses="Portraits for the spring campaign on the brand website.",
        identity_verification="Passport checked in person",
        site_url="http://127.0.0.1",
        channels=["web"],
        territories=["US"],
        expires_at=expires_at,
    )
    record = consent.sign_consent(
        token=delivered_token(link),
        purposes=purposes,
        full_name=name,
        representation="none",
        ip="203.0.113.7",
        user_agent="bench",
    )
    return subject, link, record


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, as docs/benchmarks.md holds them (numbers right-aligned)."""
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
