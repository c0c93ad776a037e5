"""Fail-closed tenant scoping for every tenant-owned model.

A shared-schema multi-tenant database leaks the moment one query forgets its
tenant filter. So the default manager of a tenant-owned model refuses to run a
query that was not started through `.for_tenant(tenant)` (or filtered on an
explicit tenant) and raises `TenantScopeError` instead of silently returning
every brand's rows (PostHog's TeamScopedManager). The check happens where a
query reaches the database, so chaining (`.filter().order_by()...`) keeps the
scope and nothing unscoped slips through as a subquery either.

Related managers anchored on an instance (`subject.records.all()`) are allowed:
the parent instance was itself loaded through a scoped query.

The escape hatch is the plain `dangerously_unscoped` manager, for the admin,
migrations and system-wide sweeps only; grep for it in review.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self, TypeVar

from django.db import models

if TYPE_CHECKING:
    from tenancy.models import Tenant

_M = TypeVar("_M", bound=models.Model)

# Lookups that pin a query to one tenant as firmly as `.for_tenant()` does.
_TENANT_LOOKUPS = frozenset(
    {"tenant", "tenant_id", "tenant__exact", "tenant_id__exact", "tenant__pk", "tenant__id"}
)


class TenantScopeError(Exception):
    """A query on a tenant-owned model was about to run without a tenant."""


class _Anchored:
    """Scope marker for querysets built by a related manager of an already-loaded instance."""

    def __repr__(self) -> str:
        return "<anchored on a loaded instance>"


ANCHORED = _Anchored()


class TenantScopedQuerySet(models.QuerySet[_M]):
    """A QuerySet that remembers which tenant (if any) it was scoped to."""

    _tenant_scope: object | None = None

    def for_tenant(self, tenant: Tenant) -> Self:
        """Start (or narrow) a query inside one tenant: the only ordinary way in."""
        from tenancy.models import Tenant

        if not isinstance(tenant, Tenant) or tenant.pk is None:
            raise TenantScopeError(
                f"for_tenant() needs a saved Tenant, got {tenant!r} for {self.model._meta.label}."
            )
        clone = self.filter(tenant=tenant)
        clone._tenant_scope = tenant
        return clone

    def none(self) -> Self:
        """An empty result leaks nothing, whatever the scope."""
        clone = super().none()
        clone._tenant_scope = clone._tenant_scope or ANCHORED
        return clone

    @property
    def is_tenant_scoped(self) -> bool:
        return self._tenant_scope is not None

    # --- scope propagation ------------------------------------------------------------
    def _clone(self) -> Self:
        clone = super()._clone()  # type: ignore[misc]
        clone._tenant_scope = self._tenant_scope
        return clone

    def _filter_or_exclude(self, negate: bool, args: Any, kwargs: Any) -> Self:
        clone = super()._filter_or_exclude(negate, args, kwargs)  # type: ignore[misc]
        if not negate and any(k in _TENANT_LOOKUPS and v is not None for k, v in kwargs.items()):
            clone._tenant_scope = clone._tenant_scope or kwargs.get("tenant") or ANCHORED
        return clone

    def _require_scope(self, operation: str) -> None:
        if self._tenant_scope is None:
            raise TenantScopeError(
                f"Unscoped {operation} on tenant-owned model {self.model._meta.label}: start the query with "
                f".for_tenant(tenant) (or use the `dangerously_unscoped` manager in admin/migrations/sweeps)."
            )

    # --- every path to the database -----------------------------------------------------
    def _fetch_all(self) -> None:
        if self._result_cache is None:
            self._require_scope("query")
        super()._fetch_all()

    def iterator(self, chunk_size: int | None = None) -> Any:
        self._require_scope("iterator()")
        return super().iterator(chunk_size)

    async def aiterator(self, chunk_size: int = 2000) -> Any:
        self._require_scope("aiterator()")
        async for item in super().aiterator(chunk_size):
            yield item

    def count(self) -> int:
        if self._result_cache is None:
            self._require_scope("count()")
        return super().count()

    def exists(self) -> bool:
        if self._result_cache is None:
            self._require_scope("exists()")
        return super().exists()

    def contains(self, obj: models.Model) -> bool:
        self._require_scope("contains()")
        return super().contains(obj)

    def aggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self._require_scope("aggregate()")
        return super().aggregate(*args, **kwargs)

    def update(self, **kwargs: Any) -> int:
        self._require_scope("update()")
        return super().update(**kwargs)

    def _update(self, values: Any) -> Any:
        self._require_scope("update")
        return super()._update(values)  # type: ignore[misc]

    def delete(self) -> tuple[int, dict[str, int]]:
        self._require_scope("delete()")
        return super().delete()

    def _raw_delete(self, using: Any) -> int:
        self._require_scope("delete")
        return super()._raw_delete(using)

    def explain(self, *, format: Any = None, **options: Any) -> str:
        self._require_scope("explain()")
        return super().explain(format=format, **options)

    def resolve_expression(self, *args: Any, **kwargs: Any) -> Any:
        """Used as a subquery (`x__in=qs`): an unscoped subquery would leak just as well."""
        self._require_scope("subquery")
        return super().resolve_expression(*args, **kwargs)

    def create(self, **kwargs: Any) -> _M:
        """Inside a scoped query, new rows belong to that tenant and to no other."""
        from tenancy.models import Tenant

        scope = self._tenant_scope
        if isinstance(scope, Tenant):
            given = kwargs.get("tenant")
            if given is None and "tenant_id" not in kwargs:
                kwargs["tenant"] = scope
            elif (given.pk if given is not None else kwargs["tenant_id"]) != scope.pk:
                raise TenantScopeError(
                    f"create() on a query scoped to tenant {scope.pk} was given another tenant."
                )
        return super().create(**kwargs)


class TenantScopedManager(models.Manager[_M]):
    """Default manager of tenant-owned models: queries must name their tenant.

    Every ordinary manager method (`filter`, `get`, `count`...) runs on the
    scoped queryset below, so it raises unless the query names its tenant.
    """

    _queryset_class = TenantScopedQuerySet
    # Historical models in migrations get a plain manager: migrations are system code.
    use_in_migrations = False

    def for_tenant(self, tenant: Tenant) -> TenantScopedQuerySet[_M]:
        return self.get_queryset().for_tenant(tenant)

    def get_queryset(self) -> TenantScopedQuerySet[_M]:
        queryset = super().get_queryset()
        assert isinstance(queryset, TenantScopedQuerySet)
        # Django builds related managers (`subject.records`) by subclassing this
        # class; they carry the parent instance and filter on it.
        if getattr(self, "instance", None) is not None and hasattr(self, "core_filters"):
            queryset._tenant_scope = ANCHORED
        return queryset
