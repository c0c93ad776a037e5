"""The review over the API: approve and reject one output or a list of them, answered per id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from audit.models import AuditEntry
from consent.models import ConsentRecord, Purpose, Subject
from tests.editing.isolation_factories import make_output, output_for, status_now

pytestmark = pytest.mark.django_db


def test_one_output_is_approved_or_rejected_with_its_reason(
    record: ConsentRecord, staff: Any, api_client_for: Callable[..., Any]
) -> None:
    client = api_client_for(staff)
    kept, dropped = output_for(record), output_for(record)

    approved = client.post(f"/api/v1/outputs/{kept.pk}/approve/", {}, format="json")
    no_reason = client.post(f"/api/v1/outputs/{dropped.pk}/reject/", {"reason": " "}, format="json")
    rejected = client.post(
        f"/api/v1/outputs/{dropped.pk}/reject/", {"reason": "Wrong jacket."}, format="json"
    )
    again = client.post(f"/api/v1/outputs/{kept.pk}/reject/", {"reason": "Second thoughts"}, format="json")

    assert approved.status_code == 200, approved.content
    assert approved.json()["status"] == "approved" and approved.json()["decided_by"] == staff.pk
    assert no_reason.status_code == 400 and no_reason.json()["code"] == "reason_required"
    assert rejected.status_code == 200
    assert (rejected.json()["status"], rejected.json()["decision_reason"]) == ("rejected", "Wrong jacket.")
    assert again.status_code == 409 and again.json()["code"] == "not_pending"
    assert "only outputs pending review can be decided" in again.json()["detail"]
    assert [status_now(kept), status_now(dropped)] == ["approved", "rejected"]


def test_an_approval_the_consent_no_longer_covers_is_a_409_with_the_consent_reason(
    make_subject: Callable[..., Subject],
    sign: Callable[..., ConsentRecord],
    staff: Any,
    api_client_for: Callable[..., Any],
) -> None:
    output = output_for(sign(make_subject("Train Only"), [Purpose.TRAIN_IDENTITY]))
    answer = api_client_for(staff).post(f"/api/v1/outputs/{output.pk}/approve/", {}, format="json")
    assert answer.status_code == 409
    assert answer.json() == {
        "detail": "Train Only has not consented to generating new images.",
        "code": "consent_missing",
    }
    assert status_now(output) == "pending_review"


def test_a_list_is_decided_per_id(
    record: ConsentRecord, staff: Any, api_client_for: Callable[..., Any], tenant_factory: Callable[..., Any]
) -> None:
    client = api_client_for(staff)
    first, second = output_for(record), output_for(record)
    foreign = make_output(tenant_factory())

    answer = client.post(
        "/api/v1/outputs/reject/",
        {"ids": [first.pk, foreign.pk, second.pk], "reason": "Off brief"},
        format="json",
    )

    assert answer.status_code == 200, answer.content
    assert answer.json()["decided"] == 2
    assert [(row["id"], row["decided"], row["status"], row["code"]) for row in answer.json()["results"]] == [
        (first.pk, True, "rejected", ""),
        (foreign.pk, False, "", "not_found"),
        (second.pk, True, "rejected", ""),
    ]
    assert [status_now(first), status_now(second), status_now(foreign)] == [
        "rejected",
        "rejected",
        "pending_review",
    ]
    entry = AuditEntry.objects.for_tenant(record.tenant).get(action="outputs.rejected")
    assert entry.payload == {
        "output_ids": [first.pk, second.pk],
        "reason": "Off brief",
        "subject_id": record.subject_id,
    }

    approve = client.post("/api/v1/outputs/approve/", {"ids": [first.pk]}, format="json")
    assert approve.json()["results"][0]["code"] == "not_pending"
    bodies: list[dict[str, Any]] = [{"ids": []}, {"ids": list(range(1, 102))}, {"ids": ["one"]}, {}]
    for body in bodies:
        assert client.post("/api/v1/outputs/approve/", body, format="json").status_code == 400, body


def test_legal_reviewers_and_other_tenants_cannot_decide(
    record: ConsentRecord,
    legal: Any,
    api_client_for: Callable[..., Any],
    tenant_factory: Callable[..., Any],
    member: Callable[..., Any],
) -> None:
    output = output_for(record)
    reviewer = api_client_for(legal)
    assert reviewer.post(f"/api/v1/outputs/{output.pk}/approve/", {}, format="json").status_code == 403
    assert reviewer.post("/api/v1/outputs/approve/", {"ids": [output.pk]}, format="json").status_code == 403
    stranger = api_client_for(member(tenant_factory()))
    assert stranger.post(f"/api/v1/outputs/{output.pk}/approve/", {}, format="json").status_code == 404
    bulk = stranger.post("/api/v1/outputs/approve/", {"ids": [output.pk]}, format="json")
    assert bulk.json()["results"][0]["code"] == "not_found"
    assert reviewer.post("/api/v1/outputs/", {}, format="json").status_code == 403
    assert status_now(output) == "pending_review"
