"""Look objects up inside the caller's tenant (Zulip's access helpers).

A missing object and another tenant's object give the very same Http404, so a
probing user learns nothing about other brands' IDs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist, ValidationError
from django.db import models
from django.http import Http404

from tenancy.models import Tenant
from tenancy.scoping import TenantScopedQuerySet

_M = TypeVar("_M", bound=models.Model)
_V = TypeVar("_V", bound=Callable[..., Any])

NOT_FOUND_MESSAGE = "Not found."


def scoped_queryset(model_or_queryset: type[_M] | models.QuerySet[_M], tenant: Tenant) -> models.QuerySet[_M]:
    """The rows of one tenant, for tenant-owned models and for plain models with a `tenant` FK."""
    if isinstance(model_or_queryset, models.QuerySet):
        queryset = model_or_queryset
    else:
        queryset = model_or_queryset._default_manager.all()
    if isinstance(queryset, TenantScopedQuerySet):
        return queryset.for_tenant(tenant)
    try:
        queryset.model._meta.get_field("tenant")
    except FieldDoesNotExist:
        raise TypeError(
            f"{queryset.model._meta.label} has no tenant; it cannot be looked up per tenant."
        ) from None
    return queryset.filter(tenant=tenant)


def get_for_tenant_or_404(
    model_or_queryset: type[_M] | models.QuerySet[_M], tenant: Tenant | None, **lookup: Any
) -> _M:
    """The object matching `lookup` inside `tenant`; Http404 for missing, foreign or malformed IDs alike."""
    if tenant is None:
        raise Http404(NOT_FOUND_MESSAGE)
    queryset = scoped_queryset(model_or_queryset, tenant)
    try:
        return queryset.get(**lookup)
    except (ObjectDoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404(NOT_FOUND_MESSAGE) from None


def tenant_object_view(model: type[models.Model], **lookup_attributes: str) -> Callable[[_V], _V]:
    """Declare which tenant-owned model a dashboard view's URL kwargs identify.

    The tenant-isolation tests walk the URL configuration and use this to build,
    for every such route, a request by another tenant's user for this tenant's
    object. `lookup_attributes` maps a URL kwarg to the object attribute holding
    its value when the names differ (default: same name, `pk` for `pk`).
    """

    def decorate(view: _V) -> _V:
        view.tenant_object_model = model  # type: ignore[attr-defined]
        view.tenant_object_lookup = dict(lookup_attributes)  # type: ignore[attr-defined]
        return view

    return decorate
