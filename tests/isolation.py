"""Registry behind the URL-generated tenant-isolation tests (tests/platform/test_isolation.py).

Every route that takes an object id must name its model (DRF: `queryset_model`
on a TenantScopedViewSet; dashboard views: `@tenant_object_view(Model)`), and
every such model needs a factory registered here that creates one object in a
given tenant. A route whose model has no factory FAILS the isolation test, so
nobody can add an uncovered route.

Register factories in `tests/<area>/isolation_factories.py`; they are imported
automatically:

    from tests.isolation import isolation_factory

    @isolation_factory(Subject)
    def make_subject(tenant):
        return consent.actions.create_subject(actor=None, tenant=tenant, ...)

A route that deliberately answers without a tenant (e.g. a subject's signed
link, where the token is the capability) declares
`view.tenant_isolation_exempt = "why"`; the reason is printed by the test.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from django.db import models

from tenancy.models import Tenant

Factory = Callable[[Tenant], models.Model]
_F = TypeVar("_F", bound=Factory)

FACTORIES: dict[type[models.Model], Factory] = {}

# Route prefixes outside tenancy altogether, with the reason.
EXEMPT_PREFIXES: dict[str, str] = {
    "admin/": "Django admin: operator (superuser) only, outside tenant scoping by design",
}


def isolation_factory(model: type[models.Model]) -> Callable[[_F], _F]:
    def register(factory: _F) -> _F:
        if model in FACTORIES and FACTORIES[model] is not factory:
            raise ValueError(f"Two isolation factories for {model._meta.label}.")
        FACTORIES[model] = factory
        return factory

    return register


def discover_factories() -> dict[type[models.Model], Factory]:
    tests_dir = Path(__file__).resolve().parent
    for package in pkgutil.iter_modules([str(tests_dir)]):
        if package.ispkg and (tests_dir / package.name / "isolation_factories.py").exists():
            importlib.import_module(f"tests.{package.name}.isolation_factories")
    return FACTORIES


def object_attribute(obj: Any, kwarg: str, lookup: dict[str, str]) -> Any:
    """The value of URL kwarg `kwarg` for `obj` (declared mapping, else the same-named attribute)."""
    return getattr(obj, lookup.get(kwarg, kwarg))
