"""The fail-closed manager: unscoped queries raise, scoped ones see one tenant only."""

from __future__ import annotations

import pytest

from audit.actions import record
from audit.models import AuditEntry
from tenancy.scoping import TenantScopedQuerySet, TenantScopeError

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_tenants(tenant_factory):
    a, b = tenant_factory(), tenant_factory()
    for tenant in (a, b):
        for i in range(3):
            record(tenant=tenant, action="test.event", payload={"i": i})
    return a, b


@pytest.mark.parametrize(
    "operation",
    [
        lambda qs: list(qs),
        lambda qs: qs.count(),
        lambda qs: qs.exists(),
        lambda qs: qs.first(),
        lambda qs: qs.get(seq=1),
        lambda qs: list(qs.values_list("seq", flat=True)),
        lambda qs: list(qs.iterator()),
        lambda qs: qs.aggregate_count() if False else qs.filter(seq__gt=0).order_by("seq")[0],
        lambda qs: bool(qs),
        lambda qs: len(qs),
        lambda qs: list(qs.filter(tenant__slug="x")),
        lambda qs: list(qs.exclude(tenant=None)),
    ],
)
def test_unscoped_reads_raise(two_tenants, operation):
    with pytest.raises(TenantScopeError, match="for_tenant"):
        operation(AuditEntry.objects.all())


def test_unscoped_aggregate_and_subquery_raise(two_tenants):
    from django.db.models import Max

    with pytest.raises(TenantScopeError):
        AuditEntry.objects.aggregate(Max("seq"))
    from tenancy.models import Tenant

    with pytest.raises(TenantScopeError):
        list(Tenant.objects.filter(pk__in=AuditEntry.objects.values("tenant_id")))


def test_unscoped_writes_raise_before_touching_the_database(two_tenants):
    queryset: TenantScopedQuerySet[AuditEntry] = TenantScopedQuerySet(model=AuditEntry)
    with pytest.raises(TenantScopeError):
        queryset.update(action="x.y")
    with pytest.raises(TenantScopeError):
        queryset.delete()


def test_scoped_queries_see_only_their_tenant(two_tenants):
    a, b = two_tenants
    scoped = AuditEntry.objects.for_tenant(a)
    assert scoped.count() == 3
    assert {e.tenant_id for e in scoped.order_by("-seq").filter(seq__gte=1)} == {a.pk}
    assert list(scoped.values_list("seq", flat=True).order_by("seq")) == [1, 2, 3]
    # An explicit tenant filter pins the query just as firmly.
    assert AuditEntry.objects.filter(tenant=b).count() == 3
    assert AuditEntry.objects.filter(tenant_id=b.pk).count() == 3


def test_for_tenant_rejects_missing_tenant():
    with pytest.raises(TenantScopeError):
        AuditEntry.objects.for_tenant(None)  # type: ignore[arg-type]


def test_none_and_escape_hatch(two_tenants):
    assert list(AuditEntry.objects.none()) == []
    assert AuditEntry.dangerously_unscoped.count() == 6
