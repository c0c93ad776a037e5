"""The release API: POST /api/v1/releases/ (201, 400 naming the field, 409 with the gate's code), the
list (filtered, its query count independent of its length), the download (gate again, audited)."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEntry
from consent.models import ConsentRecord
from editing import review
from editing.models import ReleaseDownload
from tests.editing.isolation_factories import make_release, output_for
from tests.editing.releases import approved_output

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("release_signing")]


def _body(output_id: int, **changes: Any) -> dict[str, Any]:
    ends_at = (timezone.localdate() + datetime.timedelta(days=30)).isoformat()
    body = {"output": output_id, "campaign": "Spring 2027", "channels": ["web"], "territories": ["US"]}
    return {**body, "ends_at": ends_at, **changes}


def test_post_releases_an_approved_output_and_the_download_is_the_stamped_file(
    record: ConsentRecord, staff: Any, api_client_for: Callable[..., Any]
) -> None:
    client = api_client_for(staff, record.tenant)
    output = approved_output(record, staff)

    created = client.post("/api/v1/releases/", _body(output.pk, channels=["web", "social"]), format="json")

    assert created.status_code == 201, created.content
    data = created.json()
    assert data["output"] == output.pk and data["subject"] == record.subject_id
    assert data["channels"] == ["web", "social"] and data["clearance"]["release_id"] == str(data["id"])
    assert data["download"] == f"/api/v1/releases/{data['id']}/download/"
    assert client.get(f"/api/v1/releases/?output={output.pk}").json()["results"][0]["id"] == data["id"]
    assert client.get(f"/api/v1/releases/?subject={record.subject_id + 1000}").json()["results"] == []

    download = client.get(data["download"])
    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="likeness-release-{data["id"]}.png"'
    assert download["Cache-Control"] == "private, no-store"
    import hashlib

    assert hashlib.sha256(download.content).hexdigest() == data["sha256"]
    assert ReleaseDownload.objects.for_tenant(record.tenant).count() == 1

    review.veto_output(link=record.link, output_id=output.pk)
    refused = client.get(data["download"])
    assert refused.status_code == 409
    assert refused.json()["code"] == "output_vetoed" and "vetoed" in refused.json()["detail"]
    assert AuditEntry.objects.for_tenant(record.tenant).filter(action="release.downloaded").count() == 1


def test_post_answers_400_naming_the_field_and_409_with_the_gates_reason(
    record: ConsentRecord, staff: Any, api_client_for: Callable[..., Any], tenant_factory: Callable[..., Any]
) -> None:
    client = api_client_for(staff, record.tenant)
    approved = approved_output(record, staff)
    pending = output_for(record)

    out_of_scope = client.post("/api/v1/releases/", _body(approved.pk, territories=["JP"]), format="json")
    assert out_of_scope.status_code == 400
    assert "does not cover the territories JP" in out_of_scope.json()["territories"][0]
    too_many = client.post("/api/v1/releases/", _body(approved.pk, channels=["x"] * 51), format="json")
    assert too_many.status_code == 400 and "channels" in too_many.json()
    missing = client.post("/api/v1/releases/", {"output": approved.pk}, format="json")
    assert missing.status_code == 400 and {"campaign", "channels", "territories", "ends_at"} <= set(
        missing.json()
    )
    not_approved = client.post("/api/v1/releases/", _body(pending.pk), format="json")
    assert not_approved.status_code == 409 and not_approved.json()["code"] == "output_pending_review"
    foreign = make_release(tenant_factory(name="Other Brand")).output
    assert client.post("/api/v1/releases/", _body(foreign.pk), format="json").status_code == 400
    assert client.get("/api/v1/releases/").json()["results"] == []


def test_the_release_list_costs_the_same_queries_for_5_or_50(
    tenant: Any, staff: Any, api_client_for: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    api = api_client_for(staff, tenant)
    page = client_for(staff, tenant)

    def cost(count: int) -> tuple[int, int]:
        while len(api.get("/api/v1/releases/?limit=100").json()["results"]) < count:
            make_release(tenant)
        with CaptureQueriesContext(connection) as listed:
            assert api.get("/api/v1/releases/?limit=100").status_code == 200
        with CaptureQueriesContext(connection) as shown:
            assert page.get("/releases/").status_code == 200
        return len(listed), len(shown)

    assert cost(5) == cost(50)
