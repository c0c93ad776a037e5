"""No page's cost grows with the tenant: every list and detail route, generated from the URL configuration.

For each route answering GET (dashboard pages and API endpoints alike), the
same request is made in a tenant of 10 consented subjects and in one of 1,000
(tests/fixtures/scale.py), and must run the same number of SQL queries. API
lists are asked for 5 rows in the small tenant and 50 in the large one, so a
query per row fails here as well as a query per subject of the tenant. A route
added later is covered without editing this file: it either keeps its count or
is declared below with the reason its cost grows by design.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.models import Count
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from consent.models import Subject
from tenancy.api import TENANT_HEADER
from tenancy.context import SESSION_KEY
from tenancy.models import Role
from tests.fixtures.scale import LARGE_TENANT_SUBJECTS, ScaledTenants, SeededTenant
from tests.isolation import object_attribute
from tests.platform.test_isolation import ALL_ROUTES, FACTORIES, Route, _model_of

pytestmark = pytest.mark.django_db

# Routes whose work grows with the data by design, and why; everything else must keep its count.
_VERIFICATION = "verification re-hashes the whole chain (its rate is a benchmark, docs/benchmarks.md)"
GROWS_BY_DESIGN: dict[str, str] = {
    "audit-verify": _VERIFICATION,
    "auditentry-verify": _VERIFICATION,
    "audit-export-csv": "an export is every matching entry, streamed in chunks",
    "audit-export-json": "an export is every matching entry, streamed in chunks",
    "auditentry-export-csv": "an export is every matching entry, streamed in chunks",
    "auditentry-export-json": "an export is every matching entry, streamed in chunks",
    "deletioncertificate-export-csv": "an export is every certificate, streamed in chunks",
    "deletioncertificate-export-json": "an export is every certificate, streamed in chunks",
    "consent-certificates-csv": "an export is every certificate, streamed in chunks",
    "consent-certificates-json": "an export is every certificate, streamed in chunks",
}
ROLES_TRIED = (Role.ADMIN, Role.STAFF, Role.LEGAL_REVIEWER)
SMALL_PAGE, LARGE_PAGE = 5, 50


def _get_routes() -> list[Route]:
    routes = []
    for route in ALL_ROUTES:
        if route.attribute("tenant_isolation_exempt"):
            continue  # public, token-addressed pages: no tenant to grow (tests/platform/test_isolation.py)
        if route.is_viewset and "get" not in route.callback.actions:
            continue
        routes.append(route)
    return routes


GET_ROUTES = _get_routes()


def _client(route: Route, seeded: SeededTenant, role: Role) -> Any:
    user = seeded.users[role]
    if route.pattern.startswith("api/"):
        api = APIClient()
        api.force_authenticate(user)
        api.credentials(**{f"HTTP_{TENANT_HEADER.upper().replace('-', '_')}": seeded.tenant.slug})
        return api
    client = Client()
    client.force_login(user)
    session = client.session
    session[SESSION_KEY] = seeded.tenant.pk
    session.save()
    return client


@pytest.fixture(scope="module")
def route_objects(scaled_tenants: ScaledTenants) -> dict[tuple[Any, str], Any]:
    """One object of each model the routes address, in each tenant: made once, inside the module's seed."""
    objects = {}
    for route in GET_ROUTES:
        if route.kwargs and route.name not in GROWS_BY_DESIGN:
            model, _ = _model_of(route)
            if model not in FACTORIES:
                pytest.fail(f"No isolation factory for {model._meta.label} (route {route.pattern}).")
            for size in ("small", "large"):
                if (model, size) not in objects:
                    objects[(model, size)] = FACTORIES[model](getattr(scaled_tenants, size).tenant)
    return objects


def _url(route: Route, objects: dict[tuple[Any, str], Any], size: str, page_size: int) -> str:
    kwargs = {}
    if route.kwargs:
        model, lookup = _model_of(route)
        obj = objects[(model, size)]
        kwargs = {kwarg: object_attribute(obj, kwarg, lookup) for kwarg in route.kwargs}
    url = reverse(route.name, kwargs=kwargs)
    if route.is_viewset and route.callback.actions.get("get") == "list":
        url += f"?limit={page_size}"
    return url


def _queries(client: Any, url: str) -> tuple[int, list[str]]:
    """The number of queries of the second GET of `url`, and their SQL with the parameters in place."""
    client.get(url)  # once to warm per-process caches (content types, templates), as a server has them
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
        if getattr(response, "streaming", False):
            b"".join(response.streaming_content)
    assert response.status_code == 200, (url, response.status_code)
    return len(captured), [query["sql"] for query in captured.captured_queries]


def _role_that_reads(route: Route, seeded: SeededTenant, url: str) -> Role | None:
    for role in ROLES_TRIED:
        if _client(route, seeded, role).get(url).status_code == 200:
            return role
    return None


def test_the_generator_finds_the_pages_that_grew_before(scaled_tenants: ScaledTenants) -> None:
    """Guards the generator and the seed: without these, the comparison below would pass vacuously."""
    large = scaled_tenants.large.tenant
    records_per_subject = set(
        Subject.objects.for_tenant(large).annotate(n=Count("records")).values_list("n", flat=True)
    )
    assert Subject.objects.for_tenant(large).count() == LARGE_TENANT_SUBJECTS and records_per_subject == {1}
    names = {route.name for route in GET_ROUTES}
    assert {
        "consent-subjects",
        "consent-subject",
        "subject-list",
        "subject-consent-check",
        "audit-log",
    } <= names


@pytest.mark.parametrize("route", GET_ROUTES, ids=[r.pattern for r in GET_ROUTES])
def test_a_page_costs_the_same_queries_in_a_tenant_of_10_or_1000_subjects(
    route: Route, scaled_tenants: ScaledTenants, route_objects: dict[tuple[Any, str], Any]
) -> None:
    if route.name in GROWS_BY_DESIGN:
        pytest.skip(f"grows by design: {GROWS_BY_DESIGN[route.name]}")
    small_url = _url(route, route_objects, "small", SMALL_PAGE)
    role = _role_that_reads(route, scaled_tenants.small, small_url)
    if role is None:
        pytest.skip("no role reads this route with GET (a form handler that only takes POST)")
    large_url = _url(route, route_objects, "large", LARGE_PAGE)
    small, _ = _queries(_client(route, scaled_tenants.small, role), small_url)
    large, large_sql = _queries(_client(route, scaled_tenants.large, role), large_url)
    repeated = sorted({f"{large_sql.count(sql)}x {sql}" for sql in large_sql if large_sql.count(sql) > 1})
    assert not repeated, f"GET {route.pattern} as {role.value} reads the same fact twice:\n" + "\n".join(
        repeated
    )
    assert small == large, (
        f"GET {route.pattern} as {role.value}: {small} queries with {scaled_tenants.small.subject_count} "
        f"subjects, {large} with {scaled_tenants.large.subject_count}:\n" + "\n".join(large_sql)
    )
