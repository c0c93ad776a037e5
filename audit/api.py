"""The audit log over the API: list/filter/retrieve, verify, export (read-only by construction)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from audit import actions
from audit.exports import export_response
from audit.filters import AuditEntryFilter
from audit.models import AuditEntry
from audit.serializers import AuditEntrySerializer, ChainReportSerializer
from audit.verification import verify_chain
from tenancy.api import TenantScopedReadOnlyViewSet


class AuditEntryViewSet(TenantScopedReadOnlyViewSet):
    """A tenant's audit log, newest first; filter by actor, action, target and date."""

    queryset_model = AuditEntry
    serializer_class = AuditEntrySerializer
    filterset_class = AuditEntryFilter
    extra_action_permissions = {
        "verify": "audit.view_auditentry",
        "export_csv": "audit.export_auditentry",
        "export_json": "audit.export_auditentry",
    }

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("actor").order_by("-seq")

    @extend_schema(responses=ChainReportSerializer)
    @action(detail=False)
    def verify(self, request: Request) -> Response:
        """Walk this tenant's hash chain now, check it against its latest signed checkpoint, and report."""
        report = verify_chain(request.tenant)  # type: ignore[attr-defined]
        return Response(ChainReportSerializer({**report.__dict__, "intact": report.intact}).data)

    def _export(self, request: Request, file_format: str) -> HttpResponseBase:
        entries = self.filter_queryset(self.get_queryset())
        filters = {
            key: request.query_params[key]
            for key in AuditEntryFilter.base_filters
            if key in request.query_params
        }
        tenant = request.tenant  # type: ignore[attr-defined]
        actions.record_export(actor=request.user, tenant=tenant, file_format=file_format, filters=filters)
        return export_response(entries, file_format, tenant.slug)

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    @action(detail=False, url_path="export-csv")
    def export_csv(self, request: Request) -> HttpResponseBase:
        """The filtered log as CSV (streamed); the export itself is audited."""
        return self._export(request, "csv")

    @extend_schema(responses={(200, "application/json"): OpenApiTypes.OBJECT})
    @action(detail=False, url_path="export-json")
    def export_json(self, request: Request) -> HttpResponseBase:
        """The filtered log as a JSON document (streamed); the export itself is audited."""
        return self._export(request, "json")
