"""Tenant isolation, generated from the URL configuration.

For every route that takes an object id (API and dashboard), a user of tenant B
asking for tenant A's object gets exactly the answer a missing object gets: 404
on GET, and never a change to the object, whatever B's role and the method.
Every API list endpoint leaves other tenants' rows out. Routes added later are
covered without editing this file; a route whose model has no registered
factory (tests/isolation.py) fails here.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.forms.models import model_to_dict
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.converters import IntConverter, UUIDConverter
from django.urls.resolvers import RoutePattern

from tenancy.api import TenantScopedViewSet
from tenancy.models import Role
from tests.isolation import EXEMPT_PREFIXES, discover_factories, object_attribute

pytestmark = pytest.mark.django_db
MISSING_INT = 2_147_483_000


@dataclass
class Route:
    pattern: str
    name: str | None
    callback: Any
    kwargs: tuple[str, ...]
    converters: dict[str, Any] = field(default_factory=dict)

    @property
    def view_holders(self) -> list[Any]:
        return [
            h
            for h in (
                self.callback,
                getattr(self.callback, "view_class", None),
                getattr(self.callback, "cls", None),
            )
            if h
        ]

    @property
    def is_viewset(self) -> bool:
        return hasattr(self.callback, "actions") and getattr(self.callback, "cls", None) is not None

    def attribute(self, name: str) -> Any:
        for holder in self.view_holders:
            value = getattr(holder, name, None)
            if value is not None:
                return value
        return None


def _pattern_kwargs(pattern: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    if isinstance(pattern, RoutePattern):
        return tuple(pattern.converters), dict(pattern.converters)
    return tuple(pattern.regex.groupindex), {}


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "", kwargs=(), converters=None):
    for entry in patterns:
        names, convs = _pattern_kwargs(entry.pattern)
        merged = {**(converters or {}), **convs}
        if isinstance(entry, URLResolver):
            ns = namespace + (f"{entry.namespace}:" if entry.namespace else "")
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), ns, kwargs + names, merged)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name}" if entry.name else None
            yield Route(prefix + str(entry.pattern), name, entry.callback, kwargs + names, merged)


def _routes() -> list[Route]:
    routes = []
    for route in _walk(get_resolver().url_patterns):
        plain = route.pattern.lstrip("^")
        if any(plain.startswith(prefix) for prefix in EXEMPT_PREFIXES):
            continue
        if "format" in route.kwargs:
            continue  # DRF's `.json` suffix variant of a route that is tested without it
        routes.append(route)
    return routes


ALL_ROUTES = _routes()
OBJECT_ROUTES = [r for r in ALL_ROUTES if r.kwargs]
LIST_ROUTES = [r for r in ALL_ROUTES if r.is_viewset and r.callback.actions.get("get") == "list"]
FACTORIES = discover_factories()
CSRF = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]*"')
CSP_NONCE = re.compile(rb' nonce="[^"]*"')  # per response, like the CSRF token


def _model_of(route: Route) -> tuple[Any, dict[str, str]]:
    if route.is_viewset:
        cls = route.callback.cls
        if not issubclass(cls, TenantScopedViewSet):
            pytest.fail(f"API route {route.pattern} uses {cls.__name__}, not TenantScopedViewSet.")
        return cls.queryset_model, {}
    model = route.attribute("tenant_object_model")
    if model is None:
        pytest.fail(
            f"Route {route.pattern} ({route.name}) takes {route.kwargs} but declares no model: "
            "decorate the view with tenancy.access.tenant_object_view(Model) "
            "or set tenant_isolation_exempt = 'reason'."
        )
    return model, route.attribute("tenant_object_lookup") or {}


def _missing_value(route: Route, kwarg: str, real: Any) -> Any:
    converter = route.converters.get(kwarg)
    if isinstance(converter, UUIDConverter) or isinstance(real, uuid.UUID):
        return uuid.uuid4()
    if isinstance(converter, IntConverter) or isinstance(real, int):
        return MISSING_INT
    return f"missing-{uuid.uuid4().hex[:8]}"


def _methods(route: Route) -> list[str]:
    if route.is_viewset:
        return sorted(route.callback.actions)
    return ["get", "post"]


def _body(response: Any) -> bytes:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return CSP_NONCE.sub(b"", CSRF.sub(b"", content))


@pytest.fixture
def two_tenants(tenant_factory, member, client_for):
    tenants = {"A": tenant_factory(), "B": tenant_factory()}
    clients = {
        (label, role): client_for(member(tenant, role), tenant)
        for label, tenant in tenants.items()
        for role in Role
    }
    return tenants, clients


def test_the_url_configuration_has_object_routes_to_check():
    """Guards the generator itself: if it found nothing, every test below would pass vacuously."""
    names = {route.name for route in OBJECT_ROUTES}
    assert {"member-detail", "audit-entry", "membership-detail", "auditentry-detail"} <= names
    assert {"membership-list", "auditentry-list"} <= {route.name for route in LIST_ROUTES}


@pytest.mark.parametrize("route", OBJECT_ROUTES, ids=[r.pattern for r in OBJECT_ROUTES])
def test_other_tenants_object_is_indistinguishable_from_a_missing_one(route, two_tenants):
    exempt = route.attribute("tenant_isolation_exempt")
    if exempt:
        pytest.skip(f"declared exempt: {exempt}")
    model, lookup = _model_of(route)
    if model not in FACTORIES:
        pytest.fail(
            f"No isolation factory for {model._meta.label} (route {route.pattern}); "
            "register one, see tests/isolation.py."
        )
    tenants, clients = two_tenants
    obj = FACTORIES[model](tenants["A"])
    real = {kwarg: object_attribute(obj, kwarg, lookup) for kwarg in route.kwargs}
    missing = {kwarg: _missing_value(route, kwarg, value) for kwarg, value in real.items()}
    foreign_url, missing_url = reverse(route.name, kwargs=real), reverse(route.name, kwargs=missing)
    before = model_to_dict(model._base_manager.get(pk=obj.pk))

    for role in Role:
        client = clients[("B", role)]
        for method in _methods(route):
            foreign = getattr(client, method)(foreign_url)
            absent = getattr(client, method)(missing_url)
            where = f"{method.upper()} {foreign_url} as tenant-B {role.value}"
            assert foreign.status_code == absent.status_code, where
            assert _body(foreign) == _body(absent), where
            assert foreign.status_code in ((404,) if method == "get" else (404, 405)), where

    assert model_to_dict(model._base_manager.get(pk=obj.pk)) == before
    if "get" in _methods(route):
        # The same URL works from inside tenant A for some role: the 404s above are not an accident.
        statuses = {clients[("A", role)].get(foreign_url).status_code for role in Role}
        assert 200 in statuses, f"no tenant-A role can GET {foreign_url}: {statuses}"


def _listed_ids(client: Any, url: str) -> list[Any]:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    data = response.json()
    items = data["results"] if isinstance(data, dict) and "results" in data else data
    if items and "id" not in items[0]:
        pytest.fail(f"{url} lists items without an 'id' field; the isolation check needs one.")
    return [item["id"] for item in items]


@pytest.mark.parametrize("route", LIST_ROUTES, ids=[r.pattern for r in LIST_ROUTES])
def test_list_endpoints_never_include_other_tenants_rows(route, two_tenants):
    model, _ = _model_of(route)
    if model not in FACTORIES:
        pytest.fail(f"No isolation factory for {model._meta.label} (route {route.pattern}).")
    tenants, clients = two_tenants
    foreign, own = FACTORIES[model](tenants["A"]), FACTORIES[model](tenants["B"])
    url = reverse(route.name) + "?limit=1000"
    seen_own = False
    for role in Role:
        ids = _listed_ids(clients[("B", role)], url)
        assert foreign.pk not in ids, (
            f"{url} as tenant-B {role.value} lists tenant A's {model._meta.label} {foreign.pk}"
        )
        seen_own = seen_own or own.pk in ids
    assert seen_own, f"no tenant-B role sees its own {model._meta.label} in {url}: the check proves nothing"
