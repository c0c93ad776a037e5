"""The audit log as a person reads it: facts as key/value lines, bounded per row, whole on the entry page."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.actions import record
from audit.models import AuditEntry
from tenancy.models import Role
from tests.support import tamper_audit

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer_log(tenant_factory, member, client_for):
    tenant = tenant_factory()
    reviewer = member(tenant, Role.LEGAL_REVIEWER, username="rev")
    return tenant, client_for(reviewer, tenant)


def _row_facts(html: str, seq: int) -> str:
    row = re.search(rf'href="/audit/\d+/">{seq}</a>.*?</tr>', html, re.S)
    assert row, f"no row for entry {seq}"
    return row.group(0)


def test_facts_are_key_value_lines_not_python_dict_text(reviewer_log) -> None:
    tenant, client = reviewer_log
    entry = record(
        tenant=tenant,
        action="consent.revoked",
        payload={"record_id": 7, "confirmed": True, "note": None, "channel": "subject's link"},
    )
    row = _row_facts(client.get(reverse("audit-log")).content.decode(), entry.seq)
    assert "<dt>confirmed</dt><dd>true</dd>" in row and "<dt>note</dt><dd>null</dd>" in row
    assert "<dt>channel</dt><dd>subject&#x27;s link</dd>" in row and "<dt>record_id</dt><dd>7</dd>" in row
    assert "True" not in row and "{&#x27;" not in row and "{'" not in row
    # The time reads on one line (the cell never wraps).
    assert re.search(r'class="mono nowrap when">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d<', row)


def test_a_long_payload_is_bounded_in_the_list_and_whole_on_its_own_page(reviewer_log) -> None:
    tenant, client = reviewer_log
    payload = {f"key_{i:02}": "v" * 500 for i in range(10)} | {"nested": {"a": [1, 2]}}
    entry = record(tenant=tenant, action="tenant.settings_changed", payload=payload)
    row = _row_facts(client.get(reverse("audit-log")).content.decode(), entry.seq)
    assert row.count("<dt>") == 6 and "5 more…" in row
    assert "v" * 119 + "…" in row and "v" * 121 not in row
    page = client.get(reverse("audit-entry", args=[entry.pk])).content.decode()
    facts = re.search(r'id="entry-facts">(.*?)</dd>\s*<dt>Previous', page, re.S)
    assert facts and facts.group(1).count("<dt>") == 11
    assert "v" * 500 in facts.group(1) and "<code>{&quot;a&quot;: [1, 2]}</code>" in facts.group(1)
    assert AuditEntry.objects.for_tenant(tenant).get(pk=entry.pk).payload == payload  # shown, not changed


def test_an_empty_log_page_says_how_to_widen_the_filter(reviewer_log) -> None:
    _, client = reviewer_log
    html = client.get(reverse("audit-log") + "?action=nothing.like.this").content.decode()
    assert 'class="empty"' in html and "Clear the filters" in html


@pytest.mark.parametrize("entries", [5, 50])
def test_the_log_page_costs_the_same_queries_for_5_or_50_entries(
    reviewer_log, entries, django_assert_max_num_queries
) -> None:
    tenant, client = reviewer_log
    for number in range(entries):
        record(tenant=tenant, action="test.entry", payload={"n": number, "ok": True, "tags": ["a", "b"]})
    with django_assert_max_num_queries(15):
        html = client.get(reverse("audit-log") + "?action=test.entry").content.decode()
    assert html.count("<dt>ok</dt><dd>true</dd>") == entries


def test_the_date_filter_is_a_range_on_the_timestamp_with_whole_days(reviewer_log) -> None:
    """A range on `at` (the (tenant, at) index serves it), not a cast of every row to its date."""
    tenant, client = reviewer_log
    at = {
        "before": dt.datetime(2026, 3, 1, 23, 59, 59, tzinfo=dt.UTC),
        "first": dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC),
        "last": dt.datetime(2026, 3, 3, 23, 59, 59, 999_999, tzinfo=dt.UTC),
        "after": dt.datetime(2026, 3, 4, 0, 0, tzinfo=dt.UTC),
    }
    entries = {}
    for label, moment in at.items():
        entries[label] = record(tenant=tenant, action="test.dated", payload={"label": label})
        tamper_audit("UPDATE audit_auditentry SET at = %s WHERE id = %s", [moment, entries[label].pk])
    with CaptureQueriesContext(connection) as queries:
        html = client.get(reverse("audit-log") + "?date_from=2026-03-02&date_to=2026-03-03").content.decode()
    shown = {
        label for label, entry in entries.items() if f'href="/audit/{entry.pk}/">{entry.seq}</a>' in html
    }
    assert shown == {"first", "last"}
    listing = next(
        q["sql"]
        for q in queries.captured_queries
        if 'FROM "audit_auditentry"' in q["sql"] and "LIMIT" in q["sql"]
    )
    assert '"audit_auditentry"."at" >= ' in listing and '"audit_auditentry"."at" < ' in listing, listing
    assert "::date" not in listing and "AT TIME ZONE" not in listing, listing
