"""What the platform benchmarks share: a fresh PostgreSQL database of their own, Django set up on it.

The platform benchmarks (bench/platform_load.py, bench/audit_throughput.py) write tens of
thousands of rows, so each works in a database of its own, dropped and created at the start.
Only a database whose name contains "bench" is ever dropped: a mistyped --database-url must
not cost anyone the product's data.
"""

from __future__ import annotations

import datetime
import os
import platform
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgres://likeness:likeness@127.0.0.1:5432/likeness_bench_platform"


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
    run_secret = secrets.token_urlsafe(48)
    return {
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
        f"PostgreSQL {server}, {datetime.date.today().isoformat()}, load average at start "
        f"{os.getloadavg()[0]:.1f}"
    )


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, as docs/benchmarks.md holds them (numbers right-aligned)."""
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
