"""The likeness ledger of one subject (legal review): the page, its integrity check and its zip export."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit.segment import subject_segment
from consent import actions
from consent.ledger import check_integrity, ledger_events, ledger_zip
from consent.models import Subject
from consent.views.common import can, get_subject
from tenancy.access import tenant_object_view
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm, tenant_member_required

PAGE_SIZE = 50


@require_GET
@tenant_member_required
@tenant_object_view(Subject)
def subject_ledger(request: TenantRequest, pk: int) -> HttpResponse:
    """Events page by page; the chain check walks the tenant's log, so it runs only when asked."""
    subject = get_subject(request, pk, "consent.view_consentrecord")
    check_perm(request, "audit.view_auditentry")
    page = Paginator(ledger_events(subject), PAGE_SIZE).get_page(request.GET.get("page"))
    integrity = (
        check_integrity(subject_segment(subject.tenant, subject.pk)) if "verify" in request.GET else None
    )
    return render(
        request,
        "consent/ledger.html",
        {
            "subject": subject,
            "records": subject.records.select_related("revocation", "template").order_by("signed_at"),
            "page": page,
            "integrity": integrity,
            "can_export": can(request, "consent.export_subject", subject),
        },
    )


@require_GET
@tenant_member_required
@tenant_object_view(Subject)
def subject_ledger_zip(request: TenantRequest, pk: int) -> HttpResponse:
    subject = get_subject(request, pk, "consent.export_subject")
    check_perm(request, "audit.view_auditentry")
    # Audited first, so the export is itself the last event of the ledger it contains.
    actions.record_export(
        actor=request.user,
        tenant=require_tenant(request),
        what="subject_ledger",
        file_format="zip",
        target=subject,
    )
    response = HttpResponse(ledger_zip(subject), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="likeness-ledger-subject-{subject.pk}.zip"'
    response["Cache-Control"] = "private, no-store"
    return response
