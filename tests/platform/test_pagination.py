"""Lists page without counting the tenant: keyset cursors in the API, Previous / Next on the dashboard.

A COUNT(*) on every page read every row of the tenant; an OFFSET read every row
before the page. The API's `next` link now carries the position after the last
row, and dashboard lists read one row more than they show to know if there is
another page. Where a person wants a number (the audit log), it is counted up
to a cap ("1,000+").
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.actions import record
from consent.models import Subject
from tenancy import pagination
from tenancy.models import Role
from tests.fixtures.scale import seed_tenant
from tests.support import page_link

pytestmark = pytest.mark.django_db


def _sql(queries: CaptureQueriesContext) -> str:
    return "\n".join(query["sql"] for query in queries.captured_queries)


@pytest.fixture
def hundred_and_twenty(api_client_for: Any) -> tuple[Any, Any]:
    seeded = seed_tenant("paged", 120)
    return seeded, api_client_for(seeded.users[Role.STAFF], seeded.tenant)


def test_the_api_follows_a_cursor_through_every_row_once_without_counting(hundred_and_twenty) -> None:
    seeded, client = hundred_and_twenty
    url: str | None = reverse("subject-list") + "?limit=50"
    seen: list[int] = []
    later_pages = []
    while url:
        with CaptureQueriesContext(connection) as queries:
            body = client.get(url).json()
        assert "count" not in body
        seen += [row["id"] for row in body["results"]]
        if seen[: -len(body["results"])]:
            later_pages.append(_sql(queries))
        url = body["next"]
    assert seen == sorted(Subject.objects.for_tenant(seeded.tenant).values_list("id", flat=True))
    assert len(later_pages) == 2
    for sql in later_pages:
        assert "COUNT(" not in sql and "OFFSET" not in sql, sql
        assert '"consent_subject"."id" > ' in sql, sql  # the page starts where the last one ended


def test_an_api_page_is_never_longer_than_the_maximum(monkeypatch, hundred_and_twenty) -> None:
    _, client = hundred_and_twenty
    monkeypatch.setattr(pagination.KeysetPagination, "max_page_size", 100)  # under the 120 rows there are
    body = client.get(reverse("subject-list") + "?limit=100000").json()
    assert len(body["results"]) == 100 and body["next"]


def test_an_offset_is_refused_with_what_to_do_instead(hundred_and_twenty) -> None:
    _, client = hundred_and_twenty
    response = client.get(reverse("subject-list") + "?offset=50")
    assert response.status_code == 400
    assert "next" in response.json()["offset"][0]


def test_the_subject_list_page_does_not_count_the_tenant(client_for: Any) -> None:
    seeded = seed_tenant("listed", 60)
    client = client_for(seeded.users[Role.STAFF], seeded.tenant)
    with CaptureQueriesContext(connection) as queries:
        first = client.get(reverse("consent-subjects")).content.decode()
    assert "COUNT(" not in _sql(queries), _sql(queries)
    assert first.count("data-subject=") == 50 and 'rel="next"' in first and 'rel="prev"' not in first
    with CaptureQueriesContext(connection) as queries:
        second = client.get(reverse("consent-subjects") + page_link(first, "next")).content.decode()
    sql = _sql(queries)
    assert "COUNT(" not in sql and "OFFSET" not in sql, sql  # page 2 starts where page 1 ended
    assert second.count("data-subject=") == 10 and 'rel="next"' not in second and 'rel="prev"' in second
    back = client.get(reverse("consent-subjects") + page_link(second, "prev")).content.decode()
    assert re.findall(r'data-subject="(\d+)"', back) == re.findall(r'data-subject="(\d+)"', first)
    # An edited or foreign cursor is a link a person followed: the first page, not an error.
    edited = client.get(reverse("consent-subjects") + "?cursor=bm90IGEgY3Vyc29y&offset=50")
    assert edited.status_code == 200 and edited.content.decode().count("data-subject=") == 50


def test_a_new_row_never_shifts_the_next_page(client_for: Any) -> None:
    """A cursor holds a position, not a row number: rows added before it (an OFFSET would show five of
    page one's again) leave the next page as it was."""
    from consent import actions

    seeded = seed_tenant("growing", 60)
    staff = seeded.users[Role.STAFF]
    client = client_for(staff, seeded.tenant)
    first = client.get(reverse("consent-subjects")).content.decode()
    for n in range(5):  # "A ..." sorts before every "Subject 000nn" on page one
        actions.create_subject(actor=staff, tenant=seeded.tenant, display_name=f"A new one {n}")
    second = client.get(reverse("consent-subjects") + page_link(first, "next")).content.decode()
    shown_first = set(re.findall(r'data-subject="(\d+)"', first))
    shown_second = re.findall(r'data-subject="(\d+)"', second)
    assert len(shown_second) == 10 and not shown_first & set(shown_second)


def test_the_audit_log_counts_up_to_a_cap(monkeypatch, tenant_factory, member, client_for) -> None:
    tenant = tenant_factory()
    client = client_for(member(tenant, Role.LEGAL_REVIEWER), tenant)
    for number in range(4):
        record(tenant=tenant, action="test.counted", payload={"n": number})
    monkeypatch.setattr(pagination, "COUNT_CAP", 3)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse("audit-log") + "?action=test.counted").content.decode()
    assert '<span id="entry-count">3+ entries</span>' in page
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"]]
    assert counts and all("LIMIT 4" in sql for sql in counts), counts
    monkeypatch.setattr(pagination, "COUNT_CAP", 1_000)
    page = client.get(reverse("audit-log") + "?action=test.counted").content.decode()
    assert '<span id="entry-count">4 entries</span>' in page
