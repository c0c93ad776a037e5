"""Lists page without counting the tenant: keyset cursors in the API, Previous / Next on the dashboard.

A COUNT(*) on every page read every row of the tenant; an OFFSET read every row
before the page. The API's `next` link now carries the position after the last
row, and dashboard lists read one row more than they show to know if there is
another page. Where a person wants a number (the audit log), it is counted up
to a cap ("1,000+").
"""

from __future__ import annotations

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
    second = client.get(reverse("consent-subjects") + "?page=2").content.decode()
    assert second.count("data-subject=") == 10 and 'rel="next"' not in second and 'rel="prev"' in second
    beyond = client.get(
        reverse("consent-subjects") + "?page=9"
    ).content.decode()  # a stale link: the last page
    assert beyond.count("data-subject=") == 10 and "Page 2" in beyond


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
