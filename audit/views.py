"""Dashboard pages of the audit log: browse, filter, inspect, verify, export."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit import actions
from audit.exports import export_response
from audit.filters import AuditEntryFilter
from audit.models import AuditEntry
from audit.verification import verify_chain
from tenancy.access import get_for_tenant_or_404, tenant_object_view
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm, tenant_member_required, tenant_permission_required
from tenancy.models import Membership
from tenancy.pagination import capped_count, keyset_page
from tenancy.permissions import has_perm

PAGE_SIZE = 50


def _filtered(request: TenantRequest) -> tuple[AuditEntryFilter, QuerySet[AuditEntry]]:
    """The filter form and the entries it selects; invalid filters select nothing (the form says why)."""
    entries = AuditEntry.objects.for_tenant(require_tenant(request)).select_related("actor")
    filterset = AuditEntryFilter(request.GET, queryset=entries)
    return filterset, (filterset.qs if filterset.is_valid() else entries.none())


@require_GET
@tenant_permission_required("audit.view_auditentry")
def audit_log(request: TenantRequest) -> HttpResponse:
    tenant = require_tenant(request)
    filterset, entries = _filtered(request)
    page = keyset_page(request, entries.order_by("-seq"), PAGE_SIZE)
    query = request.GET.copy()
    query.pop("cursor", None)
    members = Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__username")
    return render(
        request,
        "audit/log.html",
        {
            "filter": filterset,
            "page": page,
            "total": capped_count(entries),
            "query": query.urlencode(),
            "actor_choices": ["system", *(membership.user.get_username() for membership in members)],
            "can_export": has_perm(request.user, tenant, "audit.export_auditentry"),
        },
    )


@require_GET
@tenant_member_required
@tenant_object_view(AuditEntry)
def audit_entry(request: TenantRequest, pk: int) -> HttpResponse:
    entry = get_for_tenant_or_404(AuditEntry.objects.select_related("actor"), require_tenant(request), pk=pk)
    check_perm(request, "audit.view_auditentry", entry)
    return render(request, "audit/entry.html", {"entry": entry})


@require_GET
@tenant_permission_required("audit.view_auditentry")
def audit_verify(request: TenantRequest) -> HttpResponse:
    return render(request, "audit/verify.html", {"report": verify_chain(require_tenant(request))})


def _export(request: TenantRequest, file_format: str) -> HttpResponseBase:
    tenant = require_tenant(request)
    filterset, entries = _filtered(request)
    if not filterset.is_valid():
        return render(request, "audit/log.html", {"filter": filterset, "page": None}, status=400)
    filters = {key: str(value) for key, value in filterset.form.cleaned_data.items() if value}
    actions.record_export(actor=request.user, tenant=tenant, file_format=file_format, filters=filters)
    return export_response(entries, file_format, tenant.slug)


@require_GET
@tenant_permission_required("audit.export_auditentry")
def audit_export_csv(request: TenantRequest) -> HttpResponseBase:
    return _export(request, "csv")


@require_GET
@tenant_permission_required("audit.export_auditentry")
def audit_export_json(request: TenantRequest) -> HttpResponseBase:
    return _export(request, "json")
