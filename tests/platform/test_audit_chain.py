"""The audit chain under concurrency and under tampering, and verify_audit's verdicts."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit.actions import record
from audit.chain import GENESIS_HASH, canonical_entry, canonical_json, chain_hash
from audit.models import AuditEntry
from audit.verification import ChainStatus, verify_chain
from audit.walk import walk_chain
from tests.support import requires_postgresql, tamper_audit

ROOT = Path(__file__).resolve().parents[2]


def _verify_failure(slug: str | None = None) -> str:
    with pytest.raises(CommandError) as raised:
        call_command("verify_audit", *(["--tenant", slug] if slug else []))
    assert raised.value.returncode == 1
    return str(raised.value)


@pytest.fixture
def chain(tenant_factory):
    """Two tenants of five entries each, anchored by a signed checkpoint (in this test's own file)."""
    tenant, bystander = tenant_factory(), tenant_factory()
    for i in range(1, 6):
        record(tenant=tenant, action="test.event", payload={"n": i})
        record(tenant=bystander, action="test.event", payload={"n": i})
    call_command("anchor_audit", stdout=io.StringIO())
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
    tamper_audit(
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
    tamper_audit(
        "UPDATE audit_auditentry SET actor_id = %s WHERE tenant_id = %s AND seq = 4", [intruder.pk, tenant.pk]
    )
    assert "BROKEN at seq 4" in _verify_failure(tenant.slug)


@pytest.mark.django_db
def test_deleted_row_names_the_missing_seq(chain):
    tenant, _ = chain
    tamper_audit("DELETE FROM audit_auditentry WHERE tenant_id = %s AND seq = 3", [tenant.pk])
    message = _verify_failure()
    assert f"tenant {tenant.slug}: BROKEN at seq 3" in message and "missing" in message


@pytest.mark.django_db
def test_deleted_last_row_shows_against_the_chain_head(chain):
    tenant, _ = chain
    tamper_audit("DELETE FROM audit_auditentry WHERE tenant_id = %s AND seq = 5", [tenant.pk])
    assert f"tenant {tenant.slug}: BROKEN at seq 5" in _verify_failure()


@pytest.mark.django_db
def test_swapped_rows_name_the_first_swapped_seq(chain):
    tenant, _ = chain
    # Through a free seq: the unique (tenant, seq) constraint is checked row by row.
    for old, new in ((2, 1000), (4, 2), (1000, 4)):
        tamper_audit(
            "UPDATE audit_auditentry SET seq = %s WHERE tenant_id = %s AND seq = %s", [new, tenant.pk, old]
        )
    assert sorted(AuditEntry.objects.for_tenant(tenant).values_list("seq", flat=True)) == [1, 2, 3, 4, 5]
    assert f"tenant {tenant.slug}: BROKEN at seq 2" in _verify_failure()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "at",
    [
        dt.datetime(2026, 12, 1, tzinfo=dt.UTC),  # no microseconds: still six digits
        dt.datetime(2028, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(2027, 1, 1, 3, 4, 5, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    ],
)
def test_the_walk_hashes_an_entrys_time_as_the_writer_did(tenant_factory, at):
    """The walk has the database format each entry's time (audit.chain.TIMESTAMP_TO_CHAR); an entry
    hashed with `at` must hold, and the same entry one microsecond later must not."""
    tenant = tenant_factory()
    entry = record(tenant=tenant, action="test.event", payload={"n": 1})
    fields = {"tenant_id": tenant.pk, "seq": 1, "actor_id": entry.actor_id, "action": entry.action}
    fields |= {"target_type": entry.target_type, "target_id": entry.target_id, "payload": entry.payload}
    digest = chain_hash(GENESIS_HASH, canonical_entry(at=at, **fields))
    for stored_at in (at, at + dt.timedelta(microseconds=1)):
        tamper_audit(
            "UPDATE audit_auditentry SET at = %s, hash = %s WHERE tenant_id = %s AND seq = 1",
            [stored_at, digest, tenant.pk],
        )
        tamper_audit(
            "UPDATE audit_auditchainhead SET last_hash = %s WHERE tenant_id = %s", [digest, tenant.pk]
        )
        walk = walk_chain(tenant)
        assert walk.problem == ("" if stored_at == at else "content does not match its hash (altered)")


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
    # Back to the pool (LIKENESS_DB_POOL_SIZE 8 per process) while the eight writers hold theirs: a ninth
    # connection would wait for a writer to finish and time out on a loaded machine.
    connection.close()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    seqs = list(AuditEntry.objects.for_tenant(tenant).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, writers * per_writer + 1))
    report = verify_chain(tenant)  # holds together (nothing anchored it: that is not this test's point)
    assert report.status == ChainStatus.UNANCHORED and report.entries == 1000, report.describe()
    written = {
        (e["writer"], e["i"]) for e in AuditEntry.objects.for_tenant(tenant).values_list("payload", flat=True)
    }
    assert len(written) == 1000


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_verify_audit_exit_status_from_the_command_line(tenant_factory, tmp_path):
    tenant = tenant_factory()
    for i in range(3):
        record(tenant=tenant, action="test.event", payload={"n": i})
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "LIKENESS_AUDIT_ANCHOR_SINKS": f"file:{tmp_path / 'anchors.jsonl'}",
    }

    def manage(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", name],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    unanchored = manage("verify_audit")
    assert unanchored.returncode == 3, unanchored.stderr
    assert f"tenant {tenant.slug}: UNANCHORED, 3 entries" in unanchored.stderr
    assert manage("anchor_audit").returncode == 0
    ok = manage("verify_audit")
    assert ok.returncode == 0, ok.stderr
    assert "audit chains intact: 1 tenant(s), 3 entries" in ok.stdout

    tamper_audit(
        "UPDATE audit_auditentry SET payload = '{\"n\": 7}' WHERE tenant_id = %s AND seq = 2", [tenant.pk]
    )
    broken = manage("verify_audit")
    assert broken.returncode == 1
    assert f"tenant {tenant.slug}: BROKEN at seq 2" in broken.stderr


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [1, 2.5, None, True], "é": "ünïcode ✓", "nested": {"z": {"y": "x"}, "a": []}},
        {"subject_id": 12, "purposes": ["training", "generation"], "quote": 'a "b" \\ c\n'},
        {},
        [{"k": -0.0}, 1e300, "\u2028"],
    ],
)
def test_the_canonical_encoding_is_sorted_compact_utf8_json(value: object) -> None:
    """The chain's canonical text is exactly json.dumps with sorted keys, no whitespace and UTF-8
    (the walk and the offline checker recompute it; a changed byte would break every hash)."""
    assert canonical_json(value) == json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def test_the_canonical_encoding_refuses_what_json_cannot_say() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


@pytest.mark.parametrize(
    ("actor_id", "action", "target_type", "target_id", "payload"),
    [
        (None, "consent.signed", "consent.subject", "12", {"subject_id": 12, "purposes": ["a", "b"]}),
        (7, "x.y", "", "", {}),
        (2**40, "q.ü", 'ty"pe\\', "id\n\u2028✓", {"é": {"z": [1, None, 2.5]}, "a": "b"}),
    ],
)
def test_an_entrys_canonical_text_is_canonical_json_of_its_fields(
    actor_id, action, target_type, target_id, payload
) -> None:
    """canonical_entry writes the fixed envelope itself (the walk's speed): byte for byte what
    canonical_json of the entry's dict gives, so entries hashed before and after verify alike."""
    fields = {"tenant_id": 3, "seq": 41, "actor_id": actor_id, "action": action}
    fields |= {"target_type": target_type, "target_id": target_id, "payload": payload}
    at = dt.datetime(2026, 12, 1, 23, 59, 58, 123456, tzinfo=dt.UTC)
    expected = canonical_json(
        {
            "tenant": 3,
            "seq": 41,
            "at": "2026-12-01T23:59:58.123456Z",
            "actor": actor_id,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "payload": payload,
        }
    )
    assert canonical_entry(**fields, at=at) == expected
    assert canonical_entry(**fields, at="2026-12-01T23:59:58.123456Z") == expected


@pytest.mark.django_db(transaction=True)
@requires_postgresql
def test_the_walk_reads_ahead_on_its_own_connection_and_stops_with_the_walk(tenant_factory, monkeypatch):
    """Outside a transaction (verify_audit, the anchor run) the next chunk is fetched by a reader
    thread; a walk that stops at a broken entry stops it, and the verdict is the same."""
    import audit.walk

    monkeypatch.setattr(audit.walk, "WALK_CHUNK", 3)  # several chunks, and a full queue at the stop
    tenant = tenant_factory()
    for i in range(1, 21):
        record(tenant=tenant, action="test.event", payload={"n": i})
    assert not connection.in_atomic_block
    readers_seen: list[str] = []
    hash_entry = audit.walk.canonical_entry

    def spying(**fields):
        readers_seen.extend(t.name for t in threading.enumerate() if t.name == "audit-walk-reader")
        return hash_entry(**fields)

    monkeypatch.setattr(audit.walk, "canonical_entry", spying)
    before = {thread.ident for thread in threading.enumerate()}
    walk = walk_chain(tenant)
    assert (walk.last_seq, walk.problem) == (20, "")
    assert readers_seen, "the rows were not read ahead"
    tamper_audit(
        "UPDATE audit_auditentry SET payload = %s WHERE tenant_id = %s AND seq = 4", ['{"n": 99}', tenant.pk]
    )
    broken = walk_chain(tenant)
    assert (broken.first_bad_seq, broken.last_seq) == (4, 3), broken
    assert "altered" in broken.problem
    assert {thread.ident for thread in threading.enumerate()} == before  # no reader left behind
