"""The audit chain under concurrency and under tampering, and verify_audit's verdicts."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit.actions import record
from audit.models import AuditEntry
from audit.verification import verify_chain
from tests.support import IS_POSTGRESQL, requires_postgresql

ROOT = Path(__file__).resolve().parents[2]


def _tamper(sql: str, params: list[int | str]) -> None:
    """Raw SQL as the table owner; on PostgreSQL with the append-only trigger switched off for it."""
    with connection.cursor() as cursor:
        if IS_POSTGRESQL:
            # Fire the deferred foreign-key checks of this test's inserts, or ALTER TABLE refuses.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER audit_entry_append_only")
        cursor.execute(sql, params)
        if IS_POSTGRESQL:
            cursor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER audit_entry_append_only")


def _verify_failure(slug: str | None = None) -> str:
    with pytest.raises(CommandError) as raised:
        call_command("verify_audit", *(["--tenant", slug] if slug else []))
    assert raised.value.returncode == 1
    return str(raised.value)


@pytest.fixture
def chain(tenant_factory):
    tenant, bystander = tenant_factory(), tenant_factory()
    for i in range(1, 6):
        record(tenant=tenant, action="test.event", payload={"n": i})
        record(tenant=bystander, action="test.event", payload={"n": i})
    return tenant, bystander


@pytest.mark.django_db
def test_intact_chains_verify(chain, capsys):
    tenant, _ = chain
    call_command("verify_audit")
    assert "audit chains intact: 2 tenant(s), 10 entries" in capsys.readouterr().out
    assert verify_chain(tenant).intact


@pytest.mark.django_db
def test_altered_payload_names_its_seq(chain):
    tenant, bystander = chain
    _tamper(
        "UPDATE audit_auditentry SET payload = %s WHERE tenant_id = %s AND seq = 3", ['{"n": 99}', tenant.pk]
    )
    message = _verify_failure()
    assert f"tenant {tenant.slug}: BROKEN at seq 3" in message and "altered" in message
    assert bystander.slug not in message
    assert verify_chain(bystander).intact


@pytest.mark.django_db
def test_altered_actor_or_time_names_its_seq(chain, user_factory):
    tenant, _ = chain
    intruder = user_factory()
    _tamper(
        "UPDATE audit_auditentry SET actor_id = %s WHERE tenant_id = %s AND seq = 4", [intruder.pk, tenant.pk]
    )
    assert "BROKEN at seq 4" in _verify_failure(tenant.slug)


@pytest.mark.django_db
def test_deleted_row_names_the_missing_seq(chain):
    tenant, _ = chain
    _tamper("DELETE FROM audit_auditentry WHERE tenant_id = %s AND seq = 3", [tenant.pk])
    message = _verify_failure()
    assert f"tenant {tenant.slug}: BROKEN at seq 3" in message and "missing" in message


@pytest.mark.django_db
def test_deleted_last_row_shows_against_the_chain_head(chain):
    tenant, _ = chain
    _tamper("DELETE FROM audit_auditentry WHERE tenant_id = %s AND seq = 5", [tenant.pk])
    assert f"tenant {tenant.slug}: BROKEN at seq 5" in _verify_failure()


@pytest.mark.django_db
def test_swapped_rows_name_the_first_swapped_seq(chain):
    tenant, _ = chain
    # Through a free seq: the unique (tenant, seq) constraint is checked row by row.
    for old, new in ((2, 1000), (4, 2), (1000, 4)):
        _tamper(
            "UPDATE audit_auditentry SET seq = %s WHERE tenant_id = %s AND seq = %s", [new, tenant.pk, old]
        )
    assert sorted(AuditEntry.objects.for_tenant(tenant).values_list("seq", flat=True)) == [1, 2, 3, 4, 5]
    assert f"tenant {tenant.slug}: BROKEN at seq 2" in _verify_failure()


@pytest.mark.django_db
def test_unknown_tenant_is_a_usage_error(chain):
    with pytest.raises(CommandError) as raised:
        call_command("verify_audit", "--tenant", "no-such-brand")
    assert raised.value.returncode == 2


@requires_postgresql
@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditentry SET payload = '{}' WHERE tenant_id = %s",
        "DELETE FROM audit_auditentry WHERE tenant_id = %s",
        "UPDATE audit_auditchainhead SET last_seq = 1 WHERE tenant_id = %s",
        "DELETE FROM audit_auditchainhead WHERE tenant_id = %s",
    ],
)
def test_trigger_rejects_raw_changes_by_the_application_role(chain, sql):
    tenant, _ = chain
    refused = pytest.raises(DatabaseError, match=r"append-only|only move forward")
    with refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [tenant.pk])
    assert verify_chain(tenant).intact
    assert AuditEntry.objects.for_tenant(tenant).count() == 5


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_eight_concurrent_writers_keep_one_gapless_chain(tenant_factory):
    tenant = tenant_factory()
    writers, per_writer = 8, 125
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            start.wait()
            for i in range(per_writer):
                with transaction.atomic():
                    record(tenant=tenant, action="test.concurrent", payload={"writer": writer, "i": i})
        except BaseException as error:  # reported below, with the thread's traceback lost otherwise
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    seqs = list(AuditEntry.objects.for_tenant(tenant).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, writers * per_writer + 1))
    report = verify_chain(tenant)
    assert report.intact and report.entries == 1000, report.describe()
    written = {
        (e["writer"], e["i"]) for e in AuditEntry.objects.for_tenant(tenant).values_list("payload", flat=True)
    }
    assert len(written) == 1000


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_verify_audit_exit_status_from_the_command_line(tenant_factory):
    tenant = tenant_factory()
    for i in range(3):
        record(tenant=tenant, action="test.event", payload={"n": i})
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    command = [sys.executable, "manage.py", "verify_audit"]
    ok = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "audit chains intact: 1 tenant(s), 3 entries" in ok.stdout

    _tamper(
        "UPDATE audit_auditentry SET payload = '{\"n\": 7}' WHERE tenant_id = %s AND seq = 2", [tenant.pk]
    )
    broken = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1
    assert f"tenant {tenant.slug}: BROKEN at seq 2" in broken.stderr
