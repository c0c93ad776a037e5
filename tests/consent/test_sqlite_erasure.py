"""Crypto-erasure on the embedded SQLite database: the wrapped key leaves the database file and its WAL.

Deleting a row in SQLite only marks its bytes free, and in WAL mode the change
goes to the -wal file while the database file keeps the old page; an erased
subject's wrapped key could be read back from either. These tests run the
product in subprocesses on a real SQLite file (the suite itself may run on
PostgreSQL) while another process holds a connection open, as the web server,
worker and beat do (the last connection to close would checkpoint on its own).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Debian builds SQLite with SQLITE_SECURE_DELETE on; most other builds (python.org, Homebrew,
# python-build-standalone) leave it off. Each child starts every connection as those builds
# do, so what is tested is the product's own setting, not the build's default.
AS_MOST_BUILDS = """
import sqlite3.dbapi2

_connect = sqlite3.dbapi2.connect


def connect_as_most_builds(*args, **kwargs):
    connection = _connect(*args, **kwargs)
    connection.execute("PRAGMA secure_delete=OFF")
    return connection


sqlite3.dbapi2.connect = connect_as_most_builds
import django

django.setup()
"""
FILL = """
import json
from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone

from consent import actions
from consent.models import AssetKind, SubjectKey
from tenancy.models import Tenant
from tests.consent.mailbox import delivered_token

call_command("migrate", verbosity=0)
tenant = Tenant.objects.create(name="Embedded", slug="embedded")
subject = actions.create_subject(
    actor=None, tenant=tenant, display_name="Ada Example", contact_email="ada@example.test"
)
template = actions.publish_consent_template(
    actor=None, tenant=tenant, name="Consent", body="I agree to what I tick below."
)
link = actions.send_consent_link(
    actor=None,
    subject=subject,
    template=template,
    purposes=["train_identity"],
    intended_uses="Portraits for the spring campaign on the brand website.",
    identity_verification="Passport seen in person",
    site_url="http://testserver",
    expires_at=timezone.now() + timedelta(days=30),
)
token = delivered_token(link)  # the link reaches only the subject's mailbox (locmem here)
actions.sign_consent(token=token, purposes=["train_identity"], full_name="Ada Example", representation="none")
actions.store_subject_file(
    subject=subject, kind=AssetKind.CROP, data=b"crop", content_type="image/png", extension="png"
)
key = SubjectKey.objects.for_tenant(tenant).get(subject=subject)
print(json.dumps({"wrapped_key": bytes(key.wrapped_key).hex(), "token": token}))
"""
# The subject withdraws on their link page; the Celery task that deletes the files runs in-process.
REVOKE = """
import sys

from config.celery import app
from consent import actions

app.conf.task_always_eager = True
actions.revoke_via_link(token=sys.argv[1])
"""
SWEEP = """
from django.core.management import call_command

call_command("enforce_retention")
"""
# Another process of the product between two of its queries: a plain connection, told what to do
# on stdin. (It must be another process: closing any descriptor of the file in the process that
# holds SQLite's locks, as reading the file's bytes does, drops them.)
OTHER = """
import sqlite3
import sys

connection = sqlite3.connect(sys.argv[1], isolation_level=None)
for line in sys.stdin:
    command = line.strip()
    if command == "count keys":
        print(connection.execute("SELECT count(*) FROM consent_subjectkey").fetchone()[0], flush=True)
    else:
        connection.execute(command)
        print("ok", flush=True)
"""


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "likeness.sqlite3"


def _env(database: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "LIKENESS_"))
    }
    env.update(
        DJANGO_DEBUG="1",
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:///{database}",
        LIKENESS_STORAGE_ROOT=str(database.parent / "storage"),
        # Nothing here may reach a broker: the revocation's task runs eagerly.
        REDIS_URL="redis://127.0.0.1:1/0",
        # The consent link is e-mailed; the child reads it from its own in-memory outbox.
        DJANGO_EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    )
    return env


def _run(database: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", AS_MOST_BUILDS + script, *args],
        cwd=ROOT,
        env=_env(database),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done


def _holders(database: Path, key: bytes) -> list[str]:
    """Which of the database's files hold the key's bytes."""
    files = [database, database.with_name(database.name + "-wal")]
    return [path.name for path in files if path.exists() and key in path.read_bytes()]


@pytest.fixture
def filled(database: Path) -> tuple[bytes, str]:
    made = json.loads(_run(database, FILL).stdout.splitlines()[-1])
    return bytes.fromhex(made["wrapped_key"]), made["token"]


@pytest.fixture
def other_process(database: Path, filled: tuple[bytes, str]) -> Iterator[Callable[[str], str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", OTHER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout

    def ask(command: str) -> str:
        stdin.write(command + "\n")
        stdin.flush()
        return stdout.readline().strip()

    assert ask("count keys") == "1"
    yield ask
    stdin.close()
    process.wait(timeout=30)


def test_an_erased_key_is_in_neither_the_database_file_nor_its_wal(
    database: Path, filled: tuple[bytes, str], other_process: Callable[[str], str]
) -> None:
    key, token = filled
    assert _holders(database, key) == [database.name], "the scan finds the live key"

    _run(database, REVOKE, token)

    assert other_process("count keys") == "0"
    assert _holders(database, key) == []


def test_a_checkpoint_blocked_by_a_reader_is_finished_by_the_next_sweep(
    database: Path, filled: tuple[bytes, str], other_process: Callable[[str], str]
) -> None:
    key, token = filled
    # A long read (a report, an export) still sees the key when the erasure commits, so the
    # erasure's own checkpoint cannot copy the change into the database file (it waits, then gives up).
    other_process("BEGIN")
    assert other_process("count keys") == "1"
    revoked = _run(database, REVOKE, token)
    assert "checkpoint after an erasure was blocked by a reader" in revoked.stderr
    assert database.name in _holders(database, key)
    other_process("COMMIT")

    swept = _run(database, SWEEP)

    assert "0 subjects erased" in swept.stdout
    assert _holders(database, key) == []
