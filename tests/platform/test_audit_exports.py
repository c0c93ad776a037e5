"""Audit log browsing and exports: filters agree across dashboard and API, bad input is a clear 400."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import call_command

from audit.actions import record
from audit.models import AuditEntry
from tenancy.models import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def log(tenant_factory, member, client_for):
    tenant = tenant_factory()
    reviewer = member(tenant, Role.LEGAL_REVIEWER, username="rev")
    client = client_for(reviewer, tenant)  # logging in is entry 1 (auth.login)
    record(
        tenant=tenant, action="membership.added", actor=reviewer, target=reviewer, payload={"role": "staff"}
    )
    record(tenant=tenant, action="auth.login", actor=reviewer, target=reviewer)
    record(tenant=tenant, action="tenant.settings_changed", payload={"settings": {"ü": {"from": 1, "to": 2}}})
    return tenant, client


def _body(response) -> str:
    return b"".join(response.streaming_content).decode()


def test_csv_export_holds_the_filtered_rows_with_canonical_payloads(log):
    tenant, client = log
    response = client.get("/audit/export.csv?actor=system")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="audit-{tenant.slug}-' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    assert [(row["seq"], row["actor"], row["action"]) for row in rows] == [
        ("4", "system", "tenant.settings_changed")
    ]
    assert rows[0]["payload"] == '{"settings":{"ü":{"from":1,"to":2}}}'
    stored = AuditEntry.objects.for_tenant(tenant).get(seq=4)
    assert rows[0]["hash"] == stored.hash and rows[0]["prev_hash"] == stored.prev_hash


def test_json_export_and_the_api_agree_with_the_dashboard_filter(log):
    tenant, client = log
    document = json.loads(_body(client.get("/audit/export.json?action=auth.")))
    assert document["tenant"] == tenant.slug
    assert [entry["action"] for entry in document["entries"]] == ["auth.login", "auth.login"]
    api = client.get("/api/v1/audit-entries/?action=auth.").json()
    # The API lists newest first, like the dashboard; exports follow the chain's order.
    assert [entry["seq"] for entry in reversed(api["results"])] == [
        entry["seq"] for entry in document["entries"]
    ]
    by_target = client.get(
        f"/api/v1/audit-entries/?target_type=auth.user&target_id={document['entries'][0]['target_id']}"
    )
    assert len(by_target.json()["results"]) == 3


def test_exports_are_themselves_audited_with_their_filters(log):
    tenant, client = log
    _body(client.get("/api/v1/audit-entries/export-json/?actor=rev"))
    entry = AuditEntry.objects.for_tenant(tenant).latest("seq")
    assert entry.action == "audit.exported"
    assert entry.payload == {"format": "json", "filters": {"actor": "rev"}}


@pytest.mark.parametrize(
    "url", ["/audit/export.csv?date_from=yesterday", "/api/v1/audit-entries/export-csv/?date_to=2026-13-40"]
)
def test_export_with_a_malformed_filter_is_a_400_and_records_nothing(log, url):
    tenant, client = log
    before = AuditEntry.objects.for_tenant(tenant).count()
    response = client.get(url)
    assert response.status_code == 400
    assert (
        b"date"
        in (response.content if not response.streaming else b"".join(response.streaming_content)).lower()
    )
    assert AuditEntry.objects.for_tenant(tenant).count() == before


def test_dashboard_explains_a_malformed_filter_instead_of_showing_everything(log):
    _, client = log
    response = client.get("/audit/?date_from=not-a-date")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="filter-errors"' in page and "date_from" in page
    assert "No entries match." in page


def test_api_list_rejects_a_malformed_filter(log):
    _, client = log
    response = client.get("/api/v1/audit-entries/?date_from=31/12/2026")
    assert response.status_code == 400
    assert "date_from" in response.json()


def test_verify_endpoint_and_page_report_the_chain_and_its_anchor(log):
    """Unanchored until a signed checkpoint outside the database covers the chain, then intact."""
    tenant, client = log
    unanchored = client.get("/api/v1/audit-entries/verify/").json()
    assert (unanchored["status"], unanchored["intact"], unanchored["anchored_seq"]) == (
        "unanchored",
        False,
        None,
    )
    assert "Not anchored." in client.get("/audit/verify/").content.decode()
    call_command("anchor_audit", stdout=io.StringIO())
    record(tenant=tenant, action="test.after_the_checkpoint")
    report = client.get("/api/v1/audit-entries/verify/").json()
    anchored_at = report.pop("anchored_at")
    assert anchored_at.endswith("Z")
    assert report == {
        "tenant_slug": tenant.slug,
        "entries": 5,
        "status": "intact",
        "intact": True,
        "first_bad_seq": None,
        "problem": "",
        "anchored_seq": 4,
        "notes": [
            "entry 5 is newer than the latest checkpoint: until the next one, "
            "only the chain itself protects them"
        ],
    }
    page = client.get("/audit/verify/").content.decode()
    assert "Intact and anchored." in page and "entry 5 is newer than the latest checkpoint" in page
