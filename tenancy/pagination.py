"""Pagination whose cost does not grow with the tenant: no COUNT(*) over the whole list.

API lists (`KeysetPagination`) and the dashboard's lists of subjects, jobs,
outputs, releases, certificates and audit entries (`keyset_page`) use keyset
(cursor) pagination: the `next` link carries the position after the last row,
so page 200 costs what page 1 costs, and rows added or decided meanwhile never
shift a page. No page counts the list. Where a person wants to know how many
(the audit log), `capped_count` counts at most COUNT_CAP + 1 rows and says
"1,000+" above that: a `COUNT` over a LIMITed subquery stops after that many
index entries, however large the tenant is. (PostgreSQL's planner estimate,
pg_class.reltuples, was the other candidate: it is per table, not per tenant or
filter, so it cannot answer "entries of this tenant matching these filters".)

Lists ordered through a relation, which a cursor cannot follow (members by
user name, identity models by subject name), are paged by number
(`page_without_count`: one row more than shown, to know whether there is a next
page); members grow with the team, models with the subjects who trained one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.request import Request

COUNT_CAP = 1_000


@dataclass(frozen=True)
class CappedCount:
    """How many rows, up to COUNT_CAP; `capped` when there are more."""

    value: int
    capped: bool

    def __str__(self) -> str:
        return f"{self.value:,}+" if self.capped else f"{self.value:,}"


def capped_count(queryset: QuerySet[Any]) -> CappedCount:
    cap = COUNT_CAP
    counted = queryset.order_by()[: cap + 1].count()
    return CappedCount(min(counted, cap), counted > cap)


class UncountedPage(Sequence[Any]):
    """The part of Django's Page that the pager uses (tenancy.templatetags.ui.pager), without a count."""

    def __init__(self, rows: list[Any], number: int, more: bool) -> None:
        self.object_list = rows
        self.number = number
        self._more = more

    def __iter__(self) -> Iterator[Any]:
        return iter(self.object_list)

    def __len__(self) -> int:
        return len(self.object_list)

    def __getitem__(self, index: Any) -> Any:
        return self.object_list[index]

    def has_next(self) -> bool:
        return self._more

    def has_previous(self) -> bool:
        return self.number > 1

    def has_other_pages(self) -> bool:
        return self.has_next() or self.has_previous()

    def next_page_number(self) -> int:
        return self.number + 1

    def previous_page_number(self) -> int:
        return self.number - 1


def page_without_count(queryset: QuerySet[Any], number: Any, per_page: int) -> UncountedPage:
    """Page `number` of an ordered queryset; as Django's get_page, page 1 for a missing or malformed
    number and the last page for one past the end (only that stale link pays for a count)."""
    try:
        page = max(int(number), 1)
    except (TypeError, ValueError):
        page = 1
    start = (page - 1) * per_page
    rows = list(queryset[start : start + per_page + 1])
    if not rows and page > 1:
        last = max(1, -(-queryset.count() // per_page))
        return page_without_count(queryset, last, per_page) if last < page else UncountedPage([], page, False)
    return UncountedPage(rows[:per_page], page, len(rows) > per_page)


# The ordering fields that identify a row on their own: a cursor ordering ends with one.
_UNIQUE_LAST = frozenset({"pk", "id"})


class KeysetPagination(CursorPagination):
    """DRF's cursor pagination in the order the viewset's refine_queryset() chose, made stable with the pk.

    `limit` keeps its meaning (rows per page, now at most MAX_LIMIT); `offset` is
    refused with a 400 that says to follow `next`, rather than silently ignored
    (a client looping on offsets would read page one for ever).
    """

    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200
    ordering = "-pk"

    def get_ordering(self, request: Request, queryset: QuerySet[Any], view: Any) -> tuple[str, ...]:
        chosen = queryset.query.order_by or queryset.model._meta.ordering
        fields = [field for field in chosen if isinstance(field, str)] or ["-pk"]
        if "__" in fields[0]:
            raise TypeError(
                f"{type(view).__name__} orders by {fields[0]!r}: a cursor needs a field of the row itself "
                "first; set pagination_class on the viewset instead."
            )
        if fields[-1].lstrip("-") not in _UNIQUE_LAST:
            fields.append("-pk" if fields[0].startswith("-") else "pk")
        return tuple(fields)

    def paginate_queryset(self, queryset: QuerySet[Any], request: Request, view: Any = None) -> Any:
        if "offset" in request.query_params:
            raise ValidationError(
                {"offset": ["This list is paginated by cursor: follow the `next` link of the previous page."]}
            )
        return super().paginate_queryset(queryset, request, view)


class KeysetPage(Sequence[Any]):
    """One page of a dashboard list by cursor: its rows and the links to the pages on either side."""

    def __init__(self, rows: list[Any], previous_url: str, next_url: str) -> None:
        self.object_list = rows
        self.previous_url = previous_url
        self.next_url = next_url

    def __iter__(self) -> Iterator[Any]:
        return iter(self.object_list)

    def __len__(self) -> int:
        return len(self.object_list)

    def __getitem__(self, index: Any) -> Any:
        return self.object_list[index]

    def has_other_pages(self) -> bool:
        return bool(self.previous_url or self.next_url)


def _query_of(url: str | None) -> str:
    """The page link as the dashboard writes it: this page's own path, with its query."""
    return f"?{urlsplit(url).query}" if url else ""


class _DashboardKeyset(KeysetPagination):
    """The API's keyset pages for a dashboard list: the view sets the page size, and a cursor that
    does not decode (edited, or from another list) shows the first page rather than an error: it
    is a link a person followed."""

    def get_page_size(self, request: Request) -> int:
        return self.page_size

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound:
            return None

    def paginate_queryset(self, queryset: QuerySet[Any], request: Request, view: Any = None) -> Any:
        # The API refuses `offset` (KeysetPagination); here it means nothing.
        return CursorPagination.paginate_queryset(self, queryset, request, view)


def keyset_page(request: HttpRequest, queryset: QuerySet[Any], per_page: int) -> KeysetPage:
    """The page of an ordered list that `?cursor=` points at, as the API pages (KeysetPagination)."""
    paginator = _DashboardKeyset()
    paginator.page_size = per_page
    rows = paginator.paginate_queryset(queryset, Request(request))
    return KeysetPage(
        list(rows or []), _query_of(paginator.get_previous_link()), _query_of(paginator.get_next_link())
    )


class TeamListPagination(LimitOffsetPagination):
    """Limit/offset, with its count, for a list the size of a team that is ordered through a relation
    (members by username), which a cursor cannot follow: it grows with the people, not the subjects."""

    default_limit = 50
    max_limit = 200
