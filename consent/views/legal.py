"""Legal review: a subject's printable consent history, deletion certificates, and their exports."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from consent import actions, exports
from consent.models import DeletionCertificate, Subject
from consent.status import LINK_STATUS_PREFETCH, subject_status
from consent.views.common import can, get_subject
from tenancy.access import get_for_tenant_or_404, tenant_object_view
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm, tenant_member_required, tenant_permission_required
from tenancy.pagination import keyset_page


@require_GET
@tenant_member_required
@tenant_object_view(Subject)
def subject_history(request: TenantRequest, pk: int) -> HttpResponse:
    """Printable consent history of one subject: records, revocations, links, schedule, certificates."""
    subject = get_subject(request, pk)
    check_perm(request, "consent.view_consentrecord")
    return render(
        request,
        "consent/history.html",
        {
            "subject": subject,
            "status": subject_status(subject),
            "records": subject.records.select_related("revocation", "template").order_by("signed_at"),
            "links": subject.links.select_related("template")
            .prefetch_related(*LINK_STATUS_PREFETCH)
            .order_by("created_at"),
            "certificates": subject.deletion_certificates.order_by("started_at"),
            "erasure_requests": subject.erasure_requests.select_related(
                "requested_by", "decided_by"
            ).order_by("requested_at", "id"),
            "can_export": can(request, "consent.export_subject", subject),
        },
    )


def _history_export(request: TenantRequest, pk: int, file_format: str) -> HttpResponse:
    subject = get_subject(request, pk, "consent.export_subject")
    actions.record_export(
        actor=request.user,
        tenant=require_tenant(request),
        what="subject_history",
        file_format=file_format,
        target=subject,
    )
    document = exports.history_document(subject)
    name = f"consent-history-subject-{subject.pk}.{file_format}"
    if file_format == "json":
        return exports.json_attachment(document, name)
    return exports.csv_attachment(document["consent_records"], exports.RECORD_COLUMNS, name)


@require_GET
@tenant_member_required
@tenant_object_view(Subject)
def subject_history_json(request: TenantRequest, pk: int) -> HttpResponse:
    return _history_export(request, pk, "json")


@require_GET
@tenant_member_required
@tenant_object_view(Subject)
def subject_history_csv(request: TenantRequest, pk: int) -> HttpResponse:
    return _history_export(request, pk, "csv")


CERTIFICATES_PER_PAGE = 50


@require_GET
@tenant_permission_required("consent.view_deletioncertificate")
def certificate_list(request: TenantRequest) -> HttpResponse:
    certificates = DeletionCertificate.objects.for_tenant(require_tenant(request)).select_related("subject")
    page = keyset_page(request, certificates.order_by("-started_at", "-id"), CERTIFICATES_PER_PAGE)
    return render(
        request,
        "consent/certificate_list.html",
        {
            "certificates": page,
            "page_obj": page,
            "can_export": can(request, "consent.export_deletioncertificate"),
        },
    )


def _certificates_export(request: TenantRequest, file_format: str) -> HttpResponse:
    tenant = require_tenant(request)
    actions.record_export(
        actor=request.user, tenant=tenant, what="deletion_certificates", file_format=file_format
    )
    certificates = DeletionCertificate.objects.for_tenant(tenant).order_by("started_at")
    return exports.certificates_attachment(certificates, tenant.slug, file_format)


@require_GET
@tenant_permission_required("consent.export_deletioncertificate")
def certificates_json(request: TenantRequest) -> HttpResponse:
    return _certificates_export(request, "json")


@require_GET
@tenant_permission_required("consent.export_deletioncertificate")
def certificates_csv(request: TenantRequest) -> HttpResponse:
    return _certificates_export(request, "csv")


def _certificate(request: TenantRequest, pk: int, perm: str) -> DeletionCertificate:
    certificate = get_for_tenant_or_404(
        DeletionCertificate.objects.select_related("subject"), require_tenant(request), pk=pk
    )
    check_perm(request, perm, certificate)
    return certificate


@require_GET
@tenant_member_required
@tenant_object_view(DeletionCertificate)
def certificate_detail(request: TenantRequest, pk: int) -> HttpResponse:
    """The printable certificate."""
    certificate = _certificate(request, pk, "consent.view_deletioncertificate")
    return render(
        request,
        "consent/certificate.html",
        {
            "certificate": certificate,
            "facts": exports.certificate_facts(certificate),
            "can_export": can(request, "consent.export_deletioncertificate"),
        },
    )


@require_GET
@tenant_member_required
@tenant_object_view(DeletionCertificate)
def certificate_json(request: TenantRequest, pk: int) -> HttpResponse:
    certificate = _certificate(request, pk, "consent.export_deletioncertificate")
    actions.record_export(
        actor=request.user,
        tenant=require_tenant(request),
        what="deletion_certificate",
        file_format="json",
        target=certificate,
    )
    return exports.json_attachment(
        exports.certificate_facts(certificate), f"deletion-certificate-{certificate.public_id}.json"
    )
