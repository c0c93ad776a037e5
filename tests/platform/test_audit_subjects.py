"""Every audit entry about a subject names the subject in an indexed column, so a subject's ledger is a query.

The legal reviewer filtering by subject used to see only the entries whose target was the
subject row, missing `consent.signed`, `consent.link_sent` and `asset.stored`, whose
subject sits in the facts. The column is derived from the hashed content, and the chain
walk checks the derivation, so it cannot be edited without the verifier noticing.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.actions import record
from audit.chain import subject_reference
from audit.models import AuditEntry
from audit.verification import verify_chain
from tenancy.models import Role
from tests.support import tamper_audit

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("target_type", "target_id", "payload", "expected"),
    [
        ("consent.subject", "12", {}, 12),
        ("consent.consentrecord", "3", {"subject_id": 7}, 7),
        ("", "", {"subject_id": 9, "n": 1}, 9),
        ("", "", {"subject_id": "9"}, None),  # only a number is a reference
        ("", "", {"subject_id": True}, None),
        ("", "", {"subject_id": None}, None),
        ("consent.subject", "not-a-number", {}, None),
        ("", "", {"n": 1}, None),
    ],
)
def test_the_subject_reference_comes_from_the_target_or_the_facts(target_type, target_id, payload, expected):
    assert subject_reference(target_type, target_id, payload) == expected


def test_signing_linking_and_storing_are_found_by_the_subject_they_concern(
    tenant, enrolled_subject, make_subject, sign
):
    other = make_subject("Other Example")
    sign(other)

    entries = AuditEntry.objects.for_tenant(tenant)
    concerning = set(entries.filter(subject_ref=enrolled_subject.pk).values_list("action", flat=True))
    assert {"subject.created", "consent.link_sent", "consent.signed", "asset.stored"} <= concerning
    assert entries.filter(subject_ref=other.pk, action="consent.signed").count() == 1
    assert not entries.filter(subject_ref=other.pk, payload__subject_id=enrolled_subject.pk).exists()


def test_the_subject_filter_uses_the_index_and_reads_one_page(tenant_factory, client_for, member):
    tenant = tenant_factory()
    legal = member(tenant, Role.LEGAL_REVIEWER)
    for n in range(30):
        record(tenant=tenant, action="test.event", payload={"subject_id": n % 3, "n": n})
    client = client_for(legal, tenant)
    response = client.get("/api/v1/audit-entries/", {"subject": 1})
    assert response.status_code == 200
    rows = response.json()["results"]
    assert len(rows) == 10 and {row["subject"] for row in rows} == {1}
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/audit/", {"subject": 1})
    assert any("subject_ref" in query["sql"] for query in queries.captured_queries)
    assert 'name="subject" inputmode="numeric" value="1"' in page.content.decode()
    assert len(page.context["page"].object_list) == 10


def test_an_edited_subject_reference_breaks_the_chain_at_that_entry(tenant_factory):
    tenant = tenant_factory()
    for n in range(3):
        record(tenant=tenant, action="test.event", payload={"subject_id": 5, "n": n})
    second = AuditEntry.objects.for_tenant(tenant).get(seq=2)
    tamper_audit("UPDATE audit_auditentry SET subject_ref = %s WHERE id = %s", [6, second.pk])
    report = verify_chain(tenant)
    assert not report.intact
    assert report.first_bad_seq == 2
    assert "subject" in report.problem


@pytest.mark.django_db(transaction=True)
def test_entries_written_before_the_column_get_their_subject_and_still_verify(tenant_factory):
    from django.db.migrations.executor import MigrationExecutor

    tenant = tenant_factory()
    executor = MigrationExecutor(connection)
    executor.migrate([("audit", "0003_checkpoints_outbox")])
    try:
        with connection.cursor() as cursor:
            columns = connection.introspection.get_table_description(cursor, "audit_auditentry")
        assert "subject_ref" not in {column.name for column in columns}
        # record() of today needs the column; write the old rows as the old code did, through the old model.
        old = executor.loader.project_state([("audit", "0003_checkpoints_outbox")]).apps
        head = old.get_model("audit", "AuditChainHead")
        entry = old.get_model("audit", "AuditEntry")
        from django.utils import timezone

        from audit.chain import GENESIS_HASH, canonical_entry, chain_hash

        prev = GENESIS_HASH
        rows = [("consent.subject", "41", {}), ("", "", {"subject_id": 42}), ("", "", {"n": 1})]
        for seq, (target_type, target_id, payload) in enumerate(rows, start=1):
            fields = dict(
                tenant_id=tenant.pk,
                seq=seq,
                at=timezone.now(),
                actor_id=None,
                action="test.event",
                target_type=target_type,
                target_id=target_id,
                payload=payload,
            )
            digest = chain_hash(prev, canonical_entry(**fields))
            entry.objects.create(**fields, prev_hash=prev, hash=digest)
            prev = digest
        head.objects.create(tenant_id=tenant.pk, last_seq=len(rows), last_hash=prev)
    finally:
        MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    stored = dict(AuditEntry.objects.for_tenant(tenant).values_list("seq", "subject_ref"))
    assert stored == {1: 41, 2: 42, 3: None}
    report = verify_chain(tenant)
    assert report.first_bad_seq is None, report.problem
