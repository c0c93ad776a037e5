"""Settings in production mode, the layout's stdlib safety, and the demo seed."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from audit.verification import ChainStatus, verify_all
from tenancy.models import Membership, Role, Tenant

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "k" * 30 + "-production-like-secret-" + "x" * 30,
    "DJANGO_ALLOWED_HOSTS": "likeness.example.com",
    "DATABASE_URL": "postgres://likeness:likeness@db.example.com:5432/likeness",
    "REDIS_URL": "redis://redis.example.com:6379/0",
    "LIKENESS_MASTER_KEY": "m" * 30 + "-production-like-master-key-" + "y" * 30,
    "LIKENESS_AUDIT_ANCHOR_SINKS": "file:/var/lib/likeness/audit-anchors.jsonl,email:legal@example.com",
}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("DJANGO_", "DATABASE_URL", "REDIS_URL", "LIKENESS_MASTER_KEY", "LIKENESS_AUDIT_ANCHOR")
        )
    }
    return subprocess.run(args, cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=180)


def test_check_deploy_is_clean_with_production_environment():
    result = _run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], PRODUCTION_ENV
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_production_settings_refuse_a_missing_secret_key():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "DJANGO_SECRET_KEY"}
    result = _run([sys.executable, "manage.py", "check"], env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required unless DJANGO_DEBUG=1" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "refusal"),
    [
        ("LIKENESS_AUDIT_ANCHOR_SINKS", "", "LIKENESS_AUDIT_ANCHOR_SINKS is required unless DJANGO_DEBUG=1"),
        ("LIKENESS_AUDIT_ANCHOR_SINKS", "email:legal@example.com", "needs a file: or s3:// sink"),
        ("LIKENESS_AUDIT_ANCHOR_SINKS", "file:relative/anchors.jsonl", "a file sink needs an absolute path"),
        ("LIKENESS_AUDIT_ANCHOR_SINKS", "ftp://anchors.example.com/", "is not file:/absolute/path"),
        ("LIKENESS_AUDIT_ANCHOR_SINKS", "file:/a.jsonl,email:not-an-address", "with valid addresses"),
        ("LIKENESS_AUDIT_ANCHOR_KEY", "x" * 31, "LIKENESS_AUDIT_ANCHOR_KEY must be at least 32 characters"),
        ("LIKENESS_AUDIT_ANCHOR_TRUSTED_KEYS", "ed25519:bm90LWEta2V5", "is not a base64 Ed25519 public key"),
    ],
)
def test_production_settings_refuse_an_audit_anchor_they_cannot_use(variable, value, refusal):
    """The audit log's checkpoints must go somewhere verification can read them back, signed by a real key."""
    result = _run([sys.executable, "manage.py", "check"], {**PRODUCTION_ENV, variable: value})
    assert result.returncode != 0
    assert refusal in result.stderr


def test_production_settings_refuse_a_missing_master_key():
    """No subject file can be sealed without the key: refuse to start, not fail at the first photo."""
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "LIKENESS_MASTER_KEY"}
    result = _run([sys.executable, "manage.py", "check"], env)
    assert result.returncode != 0
    assert "LIKENESS_MASTER_KEY is required unless DJANGO_DEBUG=1" in result.stderr


@pytest.mark.parametrize("debug", ["0", "1"])
def test_settings_refuse_a_master_key_too_short_to_derive_keys_from(debug):
    env = {**PRODUCTION_ENV, "DJANGO_DEBUG": debug, "LIKENESS_MASTER_KEY": "x" * 31}
    result = _run([sys.executable, "manage.py", "check"], env)
    assert result.returncode != 0
    assert "LIKENESS_MASTER_KEY must be at least 32 characters" in result.stderr


@pytest.mark.parametrize(
    ("previous", "message"),
    [
        (
            "p" * 40 + " " + "q" * 31,
            "every key in LIKENESS_PREVIOUS_MASTER_KEYS must be at least 32 characters",
        ),
        (PRODUCTION_ENV["LIKENESS_MASTER_KEY"], "must not contain the current LIKENESS_MASTER_KEY"),
    ],
)
def test_settings_refuse_unusable_previous_master_keys(previous, message):
    env = {**PRODUCTION_ENV, "LIKENESS_PREVIOUS_MASTER_KEYS": previous}
    result = _run([sys.executable, "manage.py", "check"], env)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize("hours", ["0", "721"])
def test_settings_refuse_an_erasure_confirmation_window_out_of_bounds(hours):
    """The two-person rule may delay an erasure, never indefinitely (docs/compliance.md)."""
    env = {**PRODUCTION_ENV, "LIKENESS_ERASURE_CONFIRM_HOURS": hours}
    result = _run([sys.executable, "manage.py", "check"], env)
    assert result.returncode != 0
    assert "LIKENESS_ERASURE_CONFIRM_HOURS must be between 1 and 720" in result.stderr


def test_the_s3_backend_is_the_private_one_and_names_an_s3_compatible_endpoint():
    env = {
        **PRODUCTION_ENV,
        "LIKENESS_STORAGE_BACKEND": "s3",
        "LIKENESS_S3_BUCKET": "likeness-private",
        "LIKENESS_S3_ENDPOINT_URL": "https://minio.example.com:9000",
    }
    show = "from django.conf import settings; print(settings.STORAGES['likeness_private'])"
    result = _run([sys.executable, "manage.py", "shell", "-c", show], env)
    assert result.returncode == 0, result.stderr
    assert "'BACKEND': 'consent.s3storage.PrivateS3Storage'" in result.stdout
    assert "'endpoint_url': 'https://minio.example.com:9000'" in result.stdout
    assert "'bucket_name': 'likeness-private'" in result.stdout
    missing = _run([sys.executable, "manage.py", "check"], {**env, "LIKENESS_S3_BUCKET": ""})
    assert (
        missing.returncode != 0 and "LIKENESS_STORAGE_BACKEND=s3 needs LIKENESS_S3_BUCKET" in missing.stderr
    )


def test_the_test_session_stores_private_files_in_a_temporary_folder():
    """No test may leave a ciphertext in the repository's var/storage (or any real storage root)."""
    from django.conf import settings
    from django.core.files.storage import FileSystemStorage

    from consent.storage import private_storage

    storage = private_storage()
    assert isinstance(storage, FileSystemStorage)
    location = Path(storage.location).resolve()
    assert (
        location
        == Path(os.environ["LIKENESS_STORAGE_ROOT"]).resolve()
        == settings.LIKENESS_STORAGE_ROOT.resolve()
    )
    assert location.is_relative_to(Path(tempfile.gettempdir()).resolve())
    assert not location.is_relative_to(ROOT)


def test_this_test_process_uses_the_redis_database_its_environment_names():
    """Under `make test` (pytest-xdist) each test process has a Redis database of its own, named in
    its environment before the settings load: queues, channel layer and throttles all use it."""
    from django.conf import settings

    if "REDIS_URL" not in os.environ:
        pytest.skip("no REDIS_URL: the embedded default is used")
    named = os.environ["REDIS_URL"]
    assert settings.REDIS_URL == settings.CELERY_BROKER_URL == named
    assert settings.CACHES["default"]["LOCATION"] == named
    channel_layers: Any = settings.CHANNEL_LAYERS
    assert channel_layers["default"]["CONFIG"]["hosts"] == [named]


@pytest.mark.parametrize(
    "code",
    [
        "import uuid, platform; print(platform.system())",
        "import platform, celery, torch; print(platform.system())",
    ],
)
def test_stdlib_platform_is_not_shadowed_from_the_repository_root(code):
    result = _run([sys.executable, "-c", code], {"DJANGO_DEBUG": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Linux"
    assert not (ROOT / "platform").exists() and not (ROOT / "platform.py").exists()


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_prints_the_logins(capsys, settings):
    settings.DEBUG = True  # as under `make run`
    call_command("seed_demo")
    first = capsys.readouterr().out
    call_command("seed_demo")
    assert capsys.readouterr().out == first
    for username in ("demo-admin", "demo-staff", "demo-legal"):
        assert username in first
    demo = Tenant.objects.get(slug="demo")
    roles = dict(Membership.objects.filter(tenant=demo).values_list("user__username", "role"))
    assert roles == {"demo-admin": Role.ADMIN, "demo-staff": Role.STAFF, "demo-legal": Role.LEGAL_REVIEWER}
    # Holds together, and is anchored from the start (seed_demo signs the first checkpoints).
    assert [report.status for report in verify_all()] == [ChainStatus.INTACT] * 2
    assert Membership.objects.count() == 4  # the admin also administers the second brand


@pytest.mark.django_db
def test_seed_demo_publishes_a_consent_text_and_the_retention_schedule_once(settings):
    """A first consent link needs both; the demo must not open on an empty "Consent text" choice."""
    from django.contrib.auth.models import User

    from consent.models import ConsentTemplate, RetentionSchedule, Subject

    settings.DEBUG = True
    call_command("seed_demo")
    call_command("seed_demo")
    demo = Tenant.objects.get(slug="demo")
    [text] = ConsentTemplate.objects.for_tenant(demo)
    assert text.version == 1 and text.created_by == User.objects.get(username="demo-admin")
    for words in ("Saying no has no consequence", "withdraw your consent at any time", "retention schedule"):
        assert words in text.body
    [schedule] = RetentionSchedule.objects.for_tenant(demo)
    assert schedule.published_by == text.created_by and schedule.years_after_last_interaction == 3
    published = AuditEntry.objects.for_tenant(demo).filter(
        action__in=["consent.template_published", "retention.schedule_published"]
    )
    assert published.count() == 2
    assert not Subject.objects.for_tenant(demo).exists()


@pytest.mark.django_db
def test_seed_demo_refuses_the_published_password_in_production(settings, monkeypatch):
    settings.DEBUG = False
    monkeypatch.delenv("LIKENESS_DEMO_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="LIKENESS_DEMO_PASSWORD"):
        call_command("seed_demo")
    assert not Tenant.objects.exists()


@pytest.mark.django_db
def test_create_tenant_command_opens_an_audited_brand(user_factory, capsys):
    owner = user_factory(username="owner")
    call_command("create_tenant", "Acme Studios", "acme", "--admin", "owner")
    tenant = Tenant.objects.get(slug="acme")
    assert Membership.objects.get(tenant=tenant).user == owner
    assert [r.entries for r in verify_all([tenant])] == [2]
    with pytest.raises(CommandError, match="No user"):
        call_command("create_tenant", "Other", "other", "--admin", "ghost")
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_tenant", "Dup", "acme", "--admin", "owner")
    assert Tenant.objects.count() == 1


@pytest.mark.django_db
def test_admin_is_a_read_only_window_across_tenants(tenant_factory, user_factory, client):
    from audit.actions import record

    a, b = tenant_factory(), tenant_factory()
    record(tenant=a, action="test.event")
    record(tenant=b, action="test.event")
    client.force_login(user_factory(is_staff=True, is_superuser=True))
    listing = client.get("/admin/audit/auditentry/")
    assert listing.status_code == 200
    assert "2 audit entries" in listing.content.decode()
    assert client.get("/admin/tenancy/tenant/add/").status_code == 403


SQLITE_SETUP = """
import django
django.setup()
from django.core.management import call_command
from tenancy import actions
call_command("migrate", verbosity=0)
actions.create_tenant(name="Shared", slug="shared")
"""
SQLITE_WRITER = """
import sys
import django
django.setup()
from audit.actions import record
from tenancy.models import Tenant
tenant = Tenant.objects.get(slug="shared")
for i in range(25):
    record(tenant=tenant, action="test.concurrent", payload={"writer": int(sys.argv[1]), "i": i})
"""
SQLITE_CHECK = """
import django
django.setup()
from django.core.management import call_command
from django.db import connection
call_command("anchor_audit")
call_command("verify_audit")
with connection.cursor() as cursor:
    cursor.execute("PRAGMA journal_mode")
    print("journal_mode", cursor.fetchone()[0])
"""


def test_embedded_sqlite_takes_concurrent_writers_in_wal_mode(tmp_path):
    """The web server, the worker and beat share the SQLite file: four processes append to one chain."""
    env = {
        "DJANGO_DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "LIKENESS_AUDIT_ANCHOR_SINKS": f"file:{tmp_path / 'audit-anchors.jsonl'}",
    }
    setup = _run([sys.executable, "-c", SQLITE_SETUP], env)
    assert setup.returncode == 0, setup.stderr
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", SQLITE_WRITER, str(n)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=180)
        assert writer.returncode == 0, err
    check = _run([sys.executable, "-c", SQLITE_CHECK], env)
    assert check.returncode == 0, check.stderr
    assert "audit chains intact: 1 tenant(s), 101 entries" in check.stdout
    assert "journal_mode wal" in check.stdout
