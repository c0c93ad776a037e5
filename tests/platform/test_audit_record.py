"""audit.actions.record: chain links, payload rules, append-only guards."""

from __future__ import annotations

import io
import uuid

import pytest

from audit.actions import record
from audit.chain import GENESIS_HASH, AuditPayloadError, canonical_entry, chain_hash
from audit.models import AuditEntry, AuditImmutableError
from tests.support import requires_postgresql

pytestmark = pytest.mark.django_db


def test_entries_chain_per_tenant(tenant_factory, user_factory):
    a, b = tenant_factory(), tenant_factory()
    actor = user_factory()
    first = record(tenant=a, action="membership.added", actor=actor, target=actor, payload={"role": "staff"})
    second = record(tenant=a, action="tenant.settings_changed", payload={"keys": ["x"]})
    other = record(tenant=b, action="auth.login", actor=actor)
    assert (first.seq, second.seq, other.seq) == (1, 2, 1)
    assert first.prev_hash == GENESIS_HASH and other.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert (first.target_type, first.target_id) == ("auth.user", str(actor.pk))
    assert second.actor_id is None
    stored = AuditEntry.objects.for_tenant(a).get(seq=1)
    expected = chain_hash(
        GENESIS_HASH,
        canonical_entry(
            tenant_id=a.pk,
            seq=1,
            at=stored.at,
            actor_id=actor.pk,
            action="membership.added",
            target_type="auth.user",
            target_id=str(actor.pk),
            payload={"role": "staff"},
        ),
    )
    assert stored.hash == expected


def test_payload_is_normalized_to_plain_json(tenant_factory):
    tenant = tenant_factory()
    ident = uuid.uuid4()
    entry = record(
        tenant=tenant, action="x.y", target_type="consent.subject", target_id=ident, payload={"id": ident}
    )
    assert entry.payload == {"id": str(ident)}
    assert entry.target_id == str(ident)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"photo": b"\xff\xd8"}, "raw bytes"),
        ({"embedding": [0.1] * 128}, "feature vector"),
        ({"x": float("nan")}, "finite"),
        ({1: "a"}, "non-string key"),
        ({"blob": "x" * 20000}, "larger than"),
        ({"obj": object()}, "unsupported type"),
    ],
)
def test_bad_payloads_are_refused_and_nothing_is_written(tenant_factory, payload, message):
    tenant = tenant_factory()
    with pytest.raises(AuditPayloadError, match=message):
        record(tenant=tenant, action="x.y", payload=payload)
    assert AuditEntry.objects.for_tenant(tenant).count() == 0


@pytest.mark.parametrize("action", ["login", "Auth.Login", "auth.", "auth login", ""])
def test_bad_action_names_are_refused(tenant_factory, action):
    with pytest.raises(ValueError, match="dotted"):
        record(tenant=tenant_factory(), action=action)


def test_orm_refuses_to_change_or_delete_entries(tenant_factory):
    tenant = tenant_factory()
    entry = record(tenant=tenant, action="x.y", payload={"a": 1})
    entry.payload = {"a": 2}
    with pytest.raises(AuditImmutableError):
        entry.save()
    with pytest.raises(AuditImmutableError):
        entry.delete()
    with pytest.raises(AuditImmutableError):
        AuditEntry.objects.for_tenant(tenant).update(action="y.z")
    with pytest.raises(AuditImmutableError):
        AuditEntry.objects.for_tenant(tenant).delete()
    with pytest.raises(AuditImmutableError):
        AuditEntry.dangerously_unscoped.all().update(action="y.z")
    with pytest.raises(AuditImmutableError):
        AuditEntry.dangerously_unscoped.all().delete()
    with pytest.raises(AuditImmutableError):
        AuditEntry._base_manager.all().delete()
    assert AuditEntry.objects.for_tenant(tenant).get().payload == {"a": 1}


@requires_postgresql
def test_an_append_inside_the_callers_transaction_costs_two_statements(tenant_factory):
    """One locking read of the chain head, one statement that inserts the entry and moves the head:
    no savepoint, and no lock on the tenant row (only a repair of a lost head takes that)."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    tenant = tenant_factory()
    record(tenant=tenant, action="test.first")  # the head exists from the first append on
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        entry = record(tenant=tenant, action="test.event", payload={"subject_id": 3, "n": 1})
    statements = [query["sql"] for query in queries.captured_queries]
    assert len(statements) == 2, statements
    assert not any("SAVEPOINT" in sql or "tenancy_tenant" in sql for sql in statements)
    stored = AuditEntry.objects.for_tenant(tenant).get(pk=entry.pk)
    assert (stored.seq, stored.subject_ref, stored.hash, stored.prev_hash) == (
        entry.seq,
        3,
        entry.hash,
        entry.prev_hash,
    )
    assert stored.payload == {"subject_id": 3, "n": 1} and stored.at == entry.at


@requires_postgresql
def test_several_facts_append_in_order_in_two_statements(tenant_factory):
    """record_each: one lock of the head and one insert for all of them, chained in the order given."""
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from audit.actions import Fact, record_each
    from audit.verification import verify_chain

    tenant = tenant_factory()
    first = record(tenant=tenant, action="test.first")
    facts = [Fact(action="test.one", payload={"n": 1}), Fact(action="test.two", target_type="x", target_id=7)]
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        one, two = record_each(tenant, facts)
    assert len(queries.captured_queries) == 2, [query["sql"] for query in queries.captured_queries]
    stored = list(AuditEntry.objects.for_tenant(tenant).order_by("seq"))
    assert [(e.pk, e.seq, e.action) for e in stored[1:]] == [
        (one.pk, first.seq + 1, "test.one"),
        (two.pk, first.seq + 2, "test.two"),
    ]
    assert (one.prev_hash, two.prev_hash) == (first.hash, one.hash)
    assert [e.hash for e in stored] == [first.hash, one.hash, two.hash]
    call_command("anchor_audit", stdout=io.StringIO())
    assert verify_chain(tenant).intact


def test_a_bad_fact_among_several_writes_none_of_them(tenant_factory):
    from audit.actions import Fact, record_each

    tenant = tenant_factory()
    with pytest.raises(ValueError, match="dotted lowercase"):
        record_each(tenant, [Fact(action="test.fine"), Fact(action="Not An Action")])
    assert not AuditEntry.objects.for_tenant(tenant).exists()
