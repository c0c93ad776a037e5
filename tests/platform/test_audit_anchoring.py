"""The audit chain anchored outside the database: signed checkpoints, their sinks, and what they catch.

Every tamper here is done as the database owner would do it (raw SQL, triggers off) and, where
it matters, with the hashes recomputed: the chain alone cannot show such a rewrite, a signed
checkpoint written outside the database can.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core import mail
from django.core.management import CommandError, call_command

from audit.actions import record
from audit.chain import GENESIS_HASH
from audit.checkpoints import public_key_text, sign_checkpoint
from audit.models import AuditChainHead, AuditCheckpoint, AuditEntry
from audit.tasks import anchor_chains_task
from audit.verification import ChainStatus, verify_chain
from audit.walk import recomputed_hash, walk_chain
from tests.support import S3_CREDENTIALS, moto_s3, tamper_audit

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tenant(tenant_factory):
    tenant = tenant_factory()
    for i in range(1, 6):
        record(tenant=tenant, action="test.event", payload={"n": i})
    return tenant


def _anchor() -> str:
    out = io.StringIO()
    call_command("anchor_audit", stdout=out)
    return out.getvalue()


def _verify_fails(returncode: int = 1, *args: str) -> str:
    with pytest.raises(CommandError) as raised:
        call_command("verify_audit", *args)
    assert raised.value.returncode == returncode, str(raised.value)
    return str(raised.value)


def _verify_passes(*args: str) -> str:
    out = io.StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def _rewrite(tenant, seq: int, payload: dict[str, Any]) -> None:
    """Change entry `seq` and recompute every later hash and the head, as someone who read chain.py would."""
    prev = AuditEntry.objects.for_tenant(tenant).get(seq=seq - 1).hash if seq > 1 else GENESIS_HASH
    for entry in AuditEntry.objects.for_tenant(tenant).filter(seq__gte=seq).order_by("seq"):
        if entry.seq == seq:
            entry.payload = payload
        entry.prev_hash = prev
        digest = recomputed_hash(entry)
        tamper_audit(
            "UPDATE audit_auditentry SET payload = %s, prev_hash = %s, hash = %s WHERE id = %s",
            [json.dumps(entry.payload), prev, digest, entry.pk],
        )
        prev = digest
    tamper_audit("UPDATE audit_auditchainhead SET last_hash = %s WHERE tenant_id = %s", [prev, tenant.pk])


def _cut(tenant, keep: int) -> None:
    """Delete the entries after `keep` and roll the head back to match: the chain alone looks whole."""
    last = AuditEntry.objects.for_tenant(tenant).get(seq=keep) if keep else None
    tamper_audit("DELETE FROM audit_auditentry WHERE tenant_id = %s AND seq > %s", [tenant.pk, keep])
    if last is None:
        tamper_audit("DELETE FROM audit_auditchainhead WHERE tenant_id = %s", [tenant.pk])
    else:
        tamper_audit(
            "UPDATE audit_auditchainhead SET last_seq = %s, last_hash = %s WHERE tenant_id = %s",
            [keep, last.hash, tenant.pk],
        )


def test_a_consistent_rewrite_passes_the_chain_but_not_the_checkpoint(audit_anchor_file, tenant):
    assert "1 new checkpoint" in _anchor()
    _rewrite(tenant, 2, {"n": 99})
    assert not walk_chain(tenant).problem  # the chain alone cannot show it
    message = _verify_fails()
    assert f"tenant {tenant.slug}: BROKEN at seq 1" in message
    assert "entries 1..5 were rewritten" in message and "checkpoint #1" in message


def test_two_checkpoints_narrow_a_rewrite_down_to_the_entries_between_them(audit_anchor_file, tenant):
    _anchor()
    for i in range(6, 11):
        record(tenant=tenant, action="test.event", payload={"n": i})
    _anchor()
    _rewrite(tenant, 7, {"n": 70})
    message = _verify_fails()
    assert f"tenant {tenant.slug}: BROKEN at seq 6" in message and "entries 6..10 were rewritten" in message


def test_a_cut_tail_with_its_head_rolled_back_is_caught(audit_anchor_file, tenant):
    _anchor()
    _cut(tenant, keep=3)
    message = _verify_fails()
    assert f"tenant {tenant.slug}: BROKEN at seq 4" in message
    assert (
        "3 entries in the database, but signed checkpoint #1" in message
        and "entries 4..5 were removed" in message
    )


def test_a_deleted_chain_and_head_is_not_intact_with_zero_entries(audit_anchor_file, tenant):
    _anchor()
    _cut(tenant, keep=0)
    assert AuditEntry.objects.for_tenant(tenant).count() == 0
    message = _verify_fails()
    assert "0 entries in the database, but signed checkpoint #1" in message and "covers 5" in message


def test_a_tenant_without_any_checkpoint_is_unanchored_not_intact(audit_anchor_file, tenant):
    message = _verify_fails(3)
    assert f"tenant {tenant.slug}: UNANCHORED, 5 entries" in message
    assert verify_chain(tenant).status == ChainStatus.UNANCHORED and not verify_chain(tenant).intact
    _anchor()
    assert "audit chains intact: 1 tenant(s), 5 entries" in _verify_passes()


def test_entries_newer_than_the_last_checkpoint_are_named_as_such(audit_anchor_file, tenant):
    _anchor()
    record(tenant=tenant, action="test.event", payload={"n": 6})
    report = verify_chain(tenant)
    assert report.intact and report.anchored_seq == 5 and report.entries == 6
    assert "entry 6 is newer than the latest checkpoint" in report.describe()


def test_anchoring_is_idempotent_and_links_each_checkpoint_to_the_one_before(
    audit_anchor_file, tenant, tenant_factory
):
    quiet = tenant_factory()
    record(tenant=quiet, action="test.event")
    assert "2 new checkpoint(s)" in _anchor()
    assert "0 new checkpoint(s)" in _anchor()
    record(tenant=tenant, action="test.event")
    assert "1 new checkpoint(s)" in _anchor()
    lines = [
        json.loads(json.loads(line)["checkpoint"]) for line in audit_anchor_file.read_text().splitlines()
    ]
    mine = [body for body in lines if body["tenant_id"] == tenant.pk]
    assert [(body["number"], body["seq"]) for body in mine] == [(1, 5), (2, 6)]
    first = AuditCheckpoint.objects.get(tenant=tenant, number=1)
    assert mine[0]["previous"] is None and mine[1]["previous"] == first.digest
    assert mine[1]["head_hash"] == AuditEntry.objects.for_tenant(tenant).get(seq=6).hash


def test_a_checkpoint_signed_by_another_key_or_altered_is_refused(audit_anchor_file, tenant):
    _anchor()
    intruder = sign_checkpoint(
        Ed25519PrivateKey.generate(),
        tenant_id=tenant.pk,
        tenant_slug=tenant.slug,
        number=2,
        seq=5,
        head_hash="f" * 64,
        at="2030-01-01T00:00:00.000000Z",
        previous=AuditCheckpoint.objects.get(tenant=tenant).digest,
    )
    with audit_anchor_file.open("a") as sink:
        sink.write(intruder.line + "\n")
    message = _verify_fails()
    assert "not trusted" in message and "LIKENESS_AUDIT_ANCHOR_TRUSTED_KEYS" in message

    genuine = json.loads(audit_anchor_file.read_text().splitlines()[0])
    altered = json.loads(genuine["checkpoint"])
    altered["seq"] = 3
    genuine["checkpoint"] = json.dumps(altered, sort_keys=True, separators=(",", ":"))
    audit_anchor_file.write_text(json.dumps(genuine) + "\n")
    assert "signature does not verify" in _verify_fails()


def test_a_checkpoint_removed_from_the_file_shows_as_a_gap(audit_anchor_file, tenant):
    for i in range(3):
        record(tenant=tenant, action="test.event", payload={"more": i})
        _anchor()
    lines = audit_anchor_file.read_text().splitlines()
    audit_anchor_file.write_text("\n".join([lines[0], lines[2]]) + "\n")
    assert "checkpoint #2 is missing" in _verify_fails()


def test_checkpoints_of_a_tenant_deleted_from_the_database_are_reported(audit_anchor_file, tenant):
    _anchor()
    _cut(tenant, keep=0)
    for statement in (
        "DELETE FROM audit_auditcheckpointdelivery WHERE checkpoint_id IN "
        "(SELECT id FROM audit_auditcheckpoint WHERE tenant_id = %s)",
        "DELETE FROM audit_auditcheckpoint WHERE tenant_id = %s",
        "DELETE FROM tenancy_tenant WHERE id = %s",
    ):
        tamper_audit(statement, [tenant.pk])
    message = _verify_fails()
    assert f"tenant id {tenant.pk} ({tenant.slug}" in message and "no such tenant" in message


def test_a_deleted_head_row_no_longer_blocks_every_audited_write(audit_anchor_file, tenant):
    _anchor()
    tamper_audit("DELETE FROM audit_auditchainhead WHERE tenant_id = %s", [tenant.pk])
    assert "chain head row is missing" in _verify_fails()
    entry = record(tenant=tenant, action="test.after_the_deletion")
    assert entry.seq == 7
    rebuilt = AuditEntry.objects.for_tenant(tenant).get(seq=6)
    assert rebuilt.action == "audit.head_rebuilt"
    assert rebuilt.payload == {"reason": "missing", "head_seq": None, "last_entry_seq": 5}
    head = AuditChainHead.objects.get(tenant=tenant)
    assert (head.last_seq, head.last_hash) == (7, entry.hash)
    report = verify_chain(tenant)
    assert report.intact, report.describe()
    assert "the chain head was rebuilt at seq 6" in report.describe()


def test_a_rolled_back_head_is_rebuilt_instead_of_colliding(audit_anchor_file, tenant):
    third = AuditEntry.objects.for_tenant(tenant).get(seq=3)
    tamper_audit(
        "UPDATE audit_auditchainhead SET last_seq = 3, last_hash = %s WHERE tenant_id = %s",
        [third.hash, tenant.pk],
    )
    entry = record(tenant=tenant, action="test.after_the_rollback")
    assert entry.seq == 7
    rebuilt = AuditEntry.objects.for_tenant(tenant).get(seq=6)
    assert rebuilt.payload == {"reason": "behind", "head_seq": 3, "last_entry_seq": 5}
    assert verify_chain(tenant).status != ChainStatus.BROKEN


def test_a_failing_sink_loses_nothing_and_is_retried_next_run(settings, tmp_path, tenant):
    good = tmp_path / "good.jsonl"
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the sink wants a folder")
    settings.LIKENESS_AUDIT_ANCHOR_SINKS = [f"file:{good}", f"file:{blocked}/anchors.jsonl"]
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("anchor_audit", stdout=out)
    said = out.getvalue() + str(raised.value)
    assert "1 checkpoint(s) will be retried" in said
    assert settings.LIKENESS_MASTER_KEY not in said
    assert len(good.read_text().splitlines()) == 1

    blocked.unlink()
    assert "delivered 1 checkpoint(s)" in _anchor()
    assert (blocked / "anchors.jsonl").read_text() == good.read_text()
    _verify_passes()


def test_the_email_sink_sends_each_new_checkpoint_to_the_reviewers(settings, audit_anchor_file, tenant):
    settings.LIKENESS_AUDIT_ANCHOR_SINKS = [
        f"file:{audit_anchor_file}",
        "email:legal@example.test;audit@example.test",
    ]
    _anchor()
    _anchor()
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["legal@example.test", "audit@example.test"]
    assert audit_anchor_file.read_text().strip() in message.body
    out = io.StringIO()
    call_command("anchor_audit", "--public-key", stdout=out)
    assert out.getvalue().strip() in message.body


def test_the_beat_task_anchors_on_the_configured_interval(settings, audit_anchor_file, tenant):
    entry = settings.CELERY_BEAT_SCHEDULE["audit-anchor-chains"]
    assert entry["task"] == "audit.anchor_chains"
    assert entry["schedule"] == settings.LIKENESS_AUDIT_ANCHOR_MINUTES * 60
    assert any("new checkpoint" in line for line in anchor_chains_task())
    assert AuditCheckpoint.objects.filter(tenant=tenant).count() == 1


def test_checkpoints_signed_before_a_master_key_rotation_still_verify(settings, audit_anchor_file, tenant):
    old_master = settings.LIKENESS_MASTER_KEY
    _anchor()
    out = io.StringIO()
    call_command("anchor_audit", "--public-key", stdout=out)
    old_public = out.getvalue().strip()
    settings.LIKENESS_MASTER_KEY = "n" * 48
    settings.LIKENESS_PREVIOUS_MASTER_KEYS = [old_master]
    assert verify_chain(tenant).intact
    record(tenant=tenant, action="test.event")
    _anchor()
    _verify_passes()
    settings.LIKENESS_PREVIOUS_MASTER_KEYS = []
    assert "not trusted" in _verify_fails()
    settings.LIKENESS_AUDIT_ANCHOR_TRUSTED_KEYS = [old_public]
    _verify_passes()


def test_a_reviewer_checks_checkpoints_with_the_documented_snippet_and_the_public_key(
    audit_anchor_file, tenant
):
    _anchor()
    out = io.StringIO()
    call_command("anchor_audit", "--public-key", stdout=out)
    public = out.getvalue().strip()
    docs = (ROOT / "docs" / "operations.md").read_text()
    snippet = re.search(r"<!-- verify-checkpoint -->\s*```python\n(.*?)```", docs, re.DOTALL)
    assert snippet, "docs/operations.md lost the reviewer's verification snippet"
    script = audit_anchor_file.parent / "verify_checkpoints.py"
    script.write_text(snippet.group(1))

    def run(lines: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), public], input=lines, capture_output=True, text=True, timeout=60
        )

    done = run(audit_anchor_file.read_text())
    assert done.returncode == 0, done.stderr
    head = AuditEntry.objects.for_tenant(tenant).get(seq=5).hash
    assert f"{tenant.slug} #1 seq 5 {head}" in done.stdout
    forged = json.loads(audit_anchor_file.read_text())
    forged["signature"] = base64.b64encode(b"\0" * 64).decode()
    assert run(json.dumps(forged) + "\n").returncode != 0
    assert public_key_text(Ed25519PrivateKey.generate().public_key()).startswith("ed25519:")


def test_the_s3_sink_keeps_one_object_per_checkpoint_and_verification_reads_them(
    settings, monkeypatch, audit_anchor_file, tenant
):
    for variable, value in (
        ("AWS_ACCESS_KEY_ID", S3_CREDENTIALS["aws_access_key_id"]),
        ("AWS_SECRET_ACCESS_KEY", S3_CREDENTIALS["aws_secret_access_key"]),
        ("AWS_DEFAULT_REGION", S3_CREDENTIALS["region_name"]),
    ):
        monkeypatch.setenv(variable, value)
    with moto_s3("likeness-audit") as endpoint:
        settings.LIKENESS_AUDIT_ANCHOR_S3_ENDPOINT_URL = endpoint
        settings.LIKENESS_AUDIT_ANCHOR_SINKS = ["s3://likeness-audit/anchors", f"file:{audit_anchor_file}"]
        _anchor()
        record(tenant=tenant, action="test.event")
        _anchor()
        client = boto3.client("s3", endpoint_url=endpoint, **S3_CREDENTIALS)
        keys = sorted(item["Key"] for item in client.list_objects_v2(Bucket="likeness-audit")["Contents"])
        numbered = [
            re.fullmatch(rf"anchors/tenant-{tenant.pk}/(\d{{12}})-[0-9a-f]{{64}}\.json", key) for key in keys
        ]
        assert [int(match.group(1)) for match in numbered if match] == [1, 2]
        bodies = [client.get_object(Bucket="likeness-audit", Key=key)["Body"].read().decode() for key in keys]
        assert bodies == audit_anchor_file.read_text().splitlines()
        assert "from s3://likeness-audit/anchors" in _verify_passes()

        client.delete_object(Bucket="likeness-audit", Key=keys[0])
        assert "checkpoint #1 is missing" in _verify_fails()
        assert verify_chain(tenant).intact  # the page reads only the latest checkpoint (docs/operations.md)
        _rewrite(tenant, 3, {"n": 30})
        assert "entries 1..6 were rewritten" in verify_chain(tenant).problem

        settings.LIKENESS_AUDIT_ANCHOR_SINKS = ["s3://no-such-bucket/anchors"]
        message = _verify_fails()
        assert "could not be read (NoSuchBucket)" in message
        assert S3_CREDENTIALS["aws_secret_access_key"] not in message
