"""The approval queue /approvals/ over HTTP: what it lists, its decisions without JavaScript, its cost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from consent.models import ConsentRecord, Subject
from editing import review
from tests.editing.isolation_factories import make_output, output_for, status_now

pytestmark = pytest.mark.django_db


def _listed(response: Any) -> list[int]:
    return [output.pk for output in response.context["page_obj"].object_list]


def test_the_queue_lists_pending_outputs_newest_first_filtered_by_subject(
    record: ConsentRecord,
    staff: Any,
    client_for: Callable[..., Any],
    make_subject: Callable[..., Subject],
    sign: Callable[..., ConsentRecord],
    tenant_factory: Callable[..., Any],
) -> None:
    tenant = record.tenant
    older, newer = output_for(record), output_for(record)
    other = output_for(sign(make_subject("Noor Example")))
    decided = output_for(record)
    review.reject_outputs(actor=staff, tenant=tenant, output_ids=[decided.pk], reason="blurred")
    make_output(tenant_factory())  # another brand's: never here
    client = client_for(staff, tenant)

    page = client.get("/approvals/")
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    assert _listed(page) == [other.pk, newer.pk, older.pk]
    body = page.content.decode()
    assert f'src="/assets/{newer.image_id}/"' in body and 'href="/jobs/' in body
    assert 'data-testid="review-item"' in body and "Maya Example" in body
    assert _listed(client.get(f"/approvals/?subject={record.subject_id}")) == [newer.pk, older.pk]
    assert _listed(client.get("/approvals/?subject=999999")) == []
    assert "Nothing of this subject waits" in client.get("/approvals/?subject=999999").content.decode()


def test_decisions_without_javascript_one_by_one_and_in_bulk(
    record: ConsentRecord, staff: Any, client_for: Callable[..., Any]
) -> None:
    first, second, third, fourth = (output_for(record) for _ in range(4))
    client = client_for(staff, record.tenant)

    approved = client.post(
        "/approvals/",
        {"decision": "approve", "ids": [first.pk], "cursor": "cj0xJnA9MjAyNg", "focus": 3},
        follow=True,
    )
    assert approved.redirect_chain == [("/approvals/?cursor=cj0xJnA9MjAyNg&focus=3", 302)]
    assert f"Approved #{first.pk}." in approved.content.decode()

    no_reason = client.post(
        "/approvals/", {"decision": "reject", "ids": [second.pk], "reason": ""}, follow=True
    )
    assert "Say why the output is rejected" in no_reason.content.decode()
    assert status_now(second) == "pending_review"

    bulk = client.post(
        "/approvals/",
        {"decision": "reject", "ids": [second.pk, first.pk, third.pk], "reason": "Off brief"},
        follow=True,
    )
    text = bulk.content.decode()
    assert f"Rejected #{second.pk}, #{third.pk}." in text
    assert f"#{first.pk} not decided: Output #{first.pk} is approved" in text
    assert [status_now(o) for o in (first, second, third, fourth)] == [
        "approved",
        "rejected",
        "rejected",
        "pending_review",
    ]
    assert _listed(bulk) == [fourth.pk]  # decided outputs leave the queue

    garbled = client.post("/approvals/", {"decision": "approve", "ids": ["x"]}, follow=True)
    assert "nothing was decided" in garbled.content.decode()


def test_decided_outputs_are_listed_by_status_read_only(
    record: ConsentRecord, staff: Any, client_for: Callable[..., Any]
) -> None:
    first, second = output_for(record), output_for(record)
    review.reject_outputs(actor=staff, tenant=record.tenant, output_ids=[first.pk], reason="Too dark")
    review.reject_outputs(actor=staff, tenant=record.tenant, output_ids=[second.pk], reason="Off brief")
    client = client_for(staff, record.tenant)

    rejected = client.get("/approvals/?status=rejected")

    assert _listed(rejected) == [second.pk, first.pk]  # the latest decision first
    html = rejected.content.decode()
    assert f"by {staff.username}: Too dark" in html and 'aria-current="page"' in html
    assert 'id="bulk-form"' not in html and 'name="decision"' not in html
    assert _listed(client.get("/approvals/?status=approved")) == []
    waiting = output_for(record)
    assert _listed(client.get("/approvals/?status=nonsense")) == [waiting.pk]  # unknown: the queue


def test_legal_reviewers_and_other_brands_get_no_queue_and_decide_nothing(
    record: ConsentRecord,
    legal: Any,
    client_for: Callable[..., Any],
    member: Callable[..., Any],
    tenant_factory: Callable[..., Any],
) -> None:
    output = output_for(record)
    reviewer = client_for(legal, record.tenant)
    assert reviewer.get("/approvals/").status_code == 403
    assert reviewer.post("/approvals/", {"decision": "approve", "ids": [output.pk]}).status_code == 403
    elsewhere = tenant_factory()
    stranger = client_for(member(elsewhere), elsewhere)
    stranger.post("/approvals/", {"decision": "approve", "ids": [output.pk]})
    assert status_now(output) == "pending_review"


@pytest.mark.parametrize("rows", [5, 50])
def test_the_queue_costs_the_same_queries_for_5_or_50_outputs(
    rows: int,
    record: ConsentRecord,
    staff: Any,
    client_for: Callable[..., Any],
    django_assert_max_num_queries: Any,
) -> None:
    for _ in range(rows):
        output_for(record)
    client = client_for(staff, record.tenant)
    client.get("/approvals/")  # the session's first request loads what later ones find cached
    with django_assert_max_num_queries(8):
        page = client.get("/approvals/")
    assert len(_listed(page)) == min(rows, 20)


def test_deciding_the_first_row_brings_the_focus_back_to_the_first_row(
    record: ConsentRecord, staff: Any, client_for: Callable[..., Any]
) -> None:
    """focus=0 was dropped from the way back, so the keyboard lost its place after the first row."""
    first, _ = output_for(record), output_for(record)
    client = client_for(staff, record.tenant)
    approved = client.post("/approvals/", {"decision": "approve", "ids": [first.pk], "focus": 0})
    assert approved["Location"] == "/approvals/?focus=0"


def test_an_approved_output_offers_its_release(
    record: ConsentRecord, staff: Any, client_for: Callable[..., Any]
) -> None:
    output = output_for(record)
    review.approve_outputs(actor=staff, tenant=record.tenant, output_ids=[output.pk])
    page = client_for(staff, record.tenant).get("/approvals/?status=approved").content.decode()
    assert f'href="/outputs/{output.pk}/release/"' in page
