"""The consent app over the API (thin: every write is a consent.actions call).

Subjects carry the actions on a subject (change the contact address, send,
re-send a link or start an in-person signing, upload photos, record a
revocation, mark the purpose satisfied, erase, check consent); consent records,
links, assets and deletion certificates are read-only resources; templates and
retention schedules are versioned documents a POST publishes a new version of;
erasure requests (erasures staff started) are read-only, with confirm and
decline actions for tenant admins.
Signing is deliberately absent: only the subject signs, on the page of the link
e-mailed to them (no answer here contains that link) or in person after entering
a code e-mailed to them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, MethodNotAllowed, NotFound, Throttled, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from consent import actions, exports, vault
from consent.intake import PhotoRejectedError
from consent.mail import site_url
from consent.models import (
    Asset,
    AssetKind,
    ConsentLink,
    ConsentRecord,
    ConsentTemplate,
    DeletionCertificate,
    ErasureRequest,
    Purpose,
    RetentionSchedule,
    Subject,
)
from consent.previews import NEVER_SERVED, preview_response
from consent.serializers import (
    AssetSerializer,
    ConsentCheckSerializer,
    ConsentLinkSerializer,
    ConsentRecordSerializer,
    ConsentTemplateSerializer,
    ContactSerializer,
    DeclineSerializer,
    DeletionCertificateSerializer,
    ErasureRequestSerializer,
    HandoverStartedSerializer,
    IntakeReportSerializer,
    LinkChoiceSerializer,
    ReasonSerializer,
    RetentionScheduleSerializer,
    RevokeSerializer,
    SendLinkSerializer,
    SubjectSerializer,
)
from consent.status import LINK_STATUS_PREFETCH, STATUS_PREFETCH
from tenancy.api import TenantScopedReadOnlyViewSet, TenantScopedViewSet
from tenancy.models import Tenant


class ConsentConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "No consent in force covers this."
    default_code = "consent_required"


class StoredFileDamaged(APIException):
    """A stored file failed its checksum: a fault of the server, answered with its reason, not a traceback."""

    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    default_detail = "A stored file failed its integrity check."
    default_code = "asset_integrity"


@contextmanager
def _as_api_errors() -> Iterator[None]:
    """Action failures become 400 (bad input), 409 (no consent) or 429 (e-mail limits), with their words.

    A stored file that fails its checksum (vault.AssetIntegrityError) becomes a 500 with its reason.
    """
    try:
        yield
    except actions.DeliveryLimitError as error:
        raise Throttled(wait=error.retry_after, detail=error.message) from None
    except actions.ConsentRequiredError as error:
        raise ConsentConflict({"detail": error.message, "reason": error.reason.value}) from None
    except vault.AssetIntegrityError as error:
        raise StoredFileDamaged({"detail": error.message, "code": StoredFileDamaged.default_code}) from None
    except PhotoRejectedError as error:
        raise ValidationError({"detail": error.message, "code": error.code.value}) from None
    except actions.ConsentActionError as error:
        raise ValidationError({"detail": error.message}) from None


def _tenant(request: Request) -> Tenant:
    return request.tenant  # type: ignore[attr-defined]


class SubjectViewSet(TenantScopedViewSet):
    """Subjects with their derived consent status; POST creates one, linked to the schedule in force."""

    queryset_model = Subject
    serializer_class = SubjectSerializer
    http_method_names = ["get", "post", "head", "options"]
    extra_action_permissions = {
        "contact": "consent.change_subject",
        "send_link": "consent.add_consentlink",
        "resend_link": "consent.add_consentlink",
        "in_person": "consent.add_consentlink",
        "enrollment_photo": "consent.upload_photos_subject",
        "reference_photos": "consent.upload_photos_subject",
        "revoke": "consent.add_consentrevocation",
        "purpose_satisfied": "consent.close_purpose_subject",
        "erase": "consent.erase_subject",
        "history": "consent.export_subject",
        "consent_check": "consent.view_subject",
    }

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("retention_schedule").prefetch_related(*STATUS_PREFETCH).order_by("id")

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        with _as_api_errors():
            serializer.instance = actions.create_subject(
                actor=self.request.user, tenant=_tenant(self.request), **serializer.validated_data
            )

    @extend_schema(request=ContactSerializer, responses={200: SubjectSerializer})
    @action(detail=True, methods=["post"])
    def contact(self, request: Request, pk: str | None = None) -> Response:
        """Change the address links and codes are e-mailed to (audited; never a member's own address)."""
        subject = self.get_object()
        data = ContactSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with _as_api_errors():
            actions.change_contact_email(
                actor=request.user, subject=subject, contact_email=data.validated_data["contact_email"]
            )
        return Response(SubjectSerializer(self.get_object()).data)

    def _link_status(self, link: ConsentLink) -> dict[str, Any]:
        fresh = ConsentLink.objects.for_tenant(_tenant(self.request)).prefetch_related(*LINK_STATUS_PREFETCH)
        return dict(ConsentLinkSerializer(fresh.get(pk=link.pk)).data)

    def _subject_link(self, request: Request, subject: Subject) -> ConsentLink:
        data = LinkChoiceSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        link: ConsentLink = data.validated_data["link"]
        if link.subject_id != subject.pk:
            raise ValidationError({"link": "That consent link is not this subject's."})
        return link

    @extend_schema(request=SendLinkSerializer, responses={201: ConsentLinkSerializer})
    @action(detail=True, methods=["post"], url_path="send-link")
    def send_link(self, request: Request, pk: str | None = None) -> Response:
        """E-mail the subject a signed, expiring link; the answer says if the e-mail went, never the link."""
        subject = self.get_object()
        data = SendLinkSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        with _as_api_errors():
            link = actions.send_consent_link(
                actor=request.user, subject=subject, site_url=site_url(request), **data.validated_data
            )
        return Response(self._link_status(link), status=status.HTTP_201_CREATED)

    @extend_schema(
        request=LinkChoiceSerializer,
        responses={
            200: ConsentLinkSerializer,
            429: OpenApiResponse(description="too soon after the last e-mail, or too many for this link"),
        },
    )
    @action(detail=True, methods=["post"], url_path="resend-link")
    def resend_link(self, request: Request, pk: str | None = None) -> Response:
        """E-mail the same link again to the address it was made for, while it can be signed (limited)."""
        link = self._subject_link(request, self.get_object())
        with _as_api_errors():
            actions.resend_consent_link(actor=request.user, link=link, site_url=site_url(request))
        return Response(self._link_status(link))

    @extend_schema(
        request=LinkChoiceSerializer,
        responses={
            201: HandoverStartedSerializer,
            429: OpenApiResponse(description="too soon after the last e-mail, or too many for this link"),
        },
    )
    @action(detail=True, methods=["post"], url_path="in-person")
    def in_person(self, request: Request, pk: str | None = None) -> Response:
        """Start an in-person signing: a code is e-mailed to the subject; the handover URL needs that code."""
        link = self._subject_link(request, self.get_object())
        with _as_api_errors():
            started = actions.start_in_person_signing(actor=request.user, link=link)
        body = {
            "handover": started.handover.pk,
            "link": link.pk,
            "code_expires_at": started.handover.code_expires_at,
            "code_delivery": started.delivery,
            "url": request.build_absolute_uri(reverse("consent-handover", kwargs={"token": started.token})),
        }
        return Response(HandoverStartedSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"enrollment": {"type": "string", "format": "binary"}},
            }
        },
        responses={201: AssetSerializer},
    )
    @action(detail=True, methods=["post"], url_path="enrollment-photo")
    def enrollment_photo(self, request: Request, pk: str | None = None) -> Response:
        """The photo every reference photo is compared with (multipart field `enrollment`)."""
        subject = self.get_object()
        uploads = request.FILES.getlist("enrollment")
        if not uploads:
            raise ValidationError(
                {"enrollment": "Attach the enrollment photo as multipart field 'enrollment'."}
            )
        with _as_api_errors():
            photo = actions.set_enrollment_photo(actor=request.user, subject=subject, upload=uploads[0])
        return Response(AssetSerializer(photo).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"photos": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            }
        },
        responses={200: IntakeReportSerializer},
    )
    @action(detail=True, methods=["post"], url_path="reference-photos")
    def reference_photos(self, request: Request, pk: str | None = None) -> Response:
        """Reference photos (multipart field `photos`, repeated): each accepted or rejected on its own."""
        subject = self.get_object()
        uploads = request.FILES.getlist("photos")
        if not uploads:
            raise ValidationError({"photos": "Attach one or more files as multipart field 'photos'."})
        with _as_api_errors():
            report = actions.upload_reference_photos(actor=request.user, subject=subject, uploads=uploads)
        return Response(IntakeReportSerializer(report).data)

    @extend_schema(request=RevokeSerializer, responses={201: ConsentRecordSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        """Record a revocation the subject made by other means (with how it was received and why).

        Every use stops at once. When it ends the last consent in force, an admin's call erases at once;
        staff's opens an erasure request for an admin (`revocation.erasure_request`, with its deadline).
        """
        subject = self.get_object()
        data = RevokeSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        record = data.validated_data["record"]
        if record.subject_id != subject.pk:
            raise ValidationError({"record": "That consent record is not this subject's."})
        with _as_api_errors():
            actions.record_revocation(
                actor=request.user,
                record=record,
                reason=data.validated_data["reason"],
                received_via=data.validated_data["received_via"],
            )
        record = subject.records.select_related("revocation__erasure_request").get(pk=record.pk)
        return Response(ConsentRecordSerializer(record).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: SubjectSerializer, 202: ErasureRequestSerializer})
    @action(detail=True, methods=["post"], url_path="purpose-satisfied")
    def purpose_satisfied(self, request: Request, pk: str | None = None) -> Response:
        """Start the 'purpose satisfied' retention clock (200); staff's mark asks an admin first (202)."""
        subject = self.get_object()
        with _as_api_errors():
            pending = actions.mark_purpose_satisfied(actor=request.user, subject=subject)
        if pending is not None:
            return Response(ErasureRequestSerializer(pending).data, status=status.HTTP_202_ACCEPTED)
        return Response(SubjectSerializer(self.get_object()).data)

    @extend_schema(request=ReasonSerializer, responses={202: DeletionCertificateSerializer, 200: None})
    @action(detail=True, methods=["post"])
    def erase(self, request: Request, pk: str | None = None) -> Response:
        """Erase on request: key destroyed now, files by the worker; 200 when nothing was stored."""
        subject = self.get_object()
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with _as_api_errors():
            certificate = actions.erase_subject(
                actor=request.user, subject=subject, reason=data.validated_data["reason"]
            )
        if certificate is None:
            return Response({"detail": "Nothing of this subject is stored."}, status=status.HTTP_200_OK)
        return Response(DeletionCertificateSerializer(certificate).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def history(self, request: Request, pk: str | None = None) -> Response:
        """The subject's whole consent history for a legal reviewer (the export is audited)."""
        subject = self.get_object()
        actions.record_export(
            actor=request.user,
            tenant=_tenant(request),
            what="subject_history",
            file_format="api",
            target=subject,
        )
        return Response(exports.history_document(subject))

    @extend_schema(
        parameters=[OpenApiParameter("purpose", str, enum=[p.value for p in Purpose], required=False)],
        responses={200: ConsentCheckSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], url_path="consent-check")
    def consent_check(self, request: Request, pk: str | None = None) -> Response:
        """What consent.actions.require() answers now, per purpose (or for `?purpose=`): the gate jobs use."""
        subject = self.get_object()
        wanted = request.query_params.get("purpose")
        if wanted is not None and wanted not in Purpose.values:
            raise ValidationError({"purpose": f"One of {', '.join(Purpose.values)}."})
        checks = []
        for purpose, answer in actions.check_each(subject, [wanted] if wanted else list(Purpose.values)):
            if isinstance(answer, actions.ConsentRequiredError):
                checks.append(
                    {
                        "purpose": purpose,
                        "allowed": False,
                        "record": None,
                        "reason": answer.reason,
                        "message": answer.message,
                    }
                )
            else:
                checks.append(
                    {
                        "purpose": purpose,
                        "allowed": True,
                        "record": answer.pk,
                        "reason": None,
                        "message": None,
                    }
                )
        return Response(ConsentCheckSerializer(checks, many=True).data)


class ConsentRecordViewSet(TenantScopedReadOnlyViewSet):
    """Signed consent records, never edited; a revocation shows as a nested object."""

    queryset_model = ConsentRecord
    serializer_class = ConsentRecordSerializer

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("revocation__erasure_request").order_by("-signed_at", "-id")


class ConsentLinkViewSet(TenantScopedReadOnlyViewSet):
    """Consent links with their e-mail deliveries (the links themselves are never stored or shown)."""

    queryset_model = ConsentLink
    serializer_class = ConsentLinkSerializer

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.prefetch_related(*LINK_STATUS_PREFETCH).order_by("-created_at", "-id")


class ConsentTemplateViewSet(TenantScopedViewSet):
    """Consent texts; POST publishes a new immutable version (same name = next version)."""

    queryset_model = ConsentTemplate
    serializer_class = ConsentTemplateSerializer
    http_method_names = ["get", "post", "head", "options"]

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.order_by("name", "-version")

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        with _as_api_errors():
            serializer.instance = actions.publish_consent_template(
                actor=self.request.user, tenant=_tenant(self.request), **serializer.validated_data
            )


class RetentionScheduleViewSet(TenantScopedViewSet):
    """The tenant's retention schedule versions; POST publishes a new version."""

    queryset_model = RetentionSchedule
    serializer_class = RetentionScheduleSerializer
    http_method_names = ["get", "post", "head", "options"]

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.order_by("-version")

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        with _as_api_errors():
            serializer.instance = actions.publish_retention_schedule(
                actor=self.request.user, tenant=_tenant(self.request), **serializer.validated_data
            )


class DeletionCertificateViewSet(TenantScopedReadOnlyViewSet):
    """Deletion certificates, with CSV and JSON exports for legal reviewers (exports are audited)."""

    queryset_model = DeletionCertificate
    serializer_class = DeletionCertificateSerializer
    extra_action_permissions = {
        "export_csv": "consent.export_deletioncertificate",
        "export_json": "consent.export_deletioncertificate",
    }

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.order_by("-started_at", "-id")

    def _export(self, request: Request, file_format: str) -> HttpResponse:
        tenant = _tenant(request)
        actions.record_export(
            actor=request.user, tenant=tenant, what="deletion_certificates", file_format=file_format
        )
        return exports.certificates_attachment(self.get_queryset(), tenant.slug, file_format)

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    @action(detail=False, url_path="export-csv")
    def export_csv(self, request: Request) -> HttpResponse:
        return self._export(request, "csv")

    @extend_schema(responses={(200, "application/json"): OpenApiTypes.OBJECT})
    @action(detail=False, url_path="export-json")
    def export_json(self, request: Request) -> HttpResponse:
        return self._export(request, "json")


class ErasureRequestViewSet(TenantScopedReadOnlyViewSet):
    """Erasures that staff started, each with its deadline; a tenant admin other than the requester decides.

    POST `confirm`: a revocation is erased now (a consent in force again closes it as
    superseded instead), a purpose's retention clock starts now. POST `decline`
    (`reason`): only a "purpose satisfied" request; a revocation cannot be declined.
    Filter with `?state=pending`, `?trigger=`, `?subject=`.
    """

    queryset_model = ErasureRequest
    serializer_class = ErasureRequestSerializer
    http_method_names = ["get", "post", "head", "options"]
    filterset_fields = ["state", "trigger", "subject"]
    extra_action_permissions = {
        "confirm": "consent.confirm_erasurerequest",
        "decline": "consent.confirm_erasurerequest",
    }

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.order_by("-requested_at", "-id")

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        raise MethodNotAllowed("POST", detail="Erasure requests are opened by revocations and purpose marks.")

    @extend_schema(request=None, responses={200: ErasureRequestSerializer})
    @action(detail=True, methods=["post"])
    def confirm(self, request: Request, pk: str | None = None) -> Response:
        erasure_request = self.get_object()
        with _as_api_errors():
            decided = actions.confirm_erasure_request(actor=request.user, request=erasure_request)
        return Response(ErasureRequestSerializer(decided).data)

    @extend_schema(request=DeclineSerializer, responses={200: ErasureRequestSerializer})
    @action(detail=True, methods=["post"])
    def decline(self, request: Request, pk: str | None = None) -> Response:
        erasure_request = self.get_object()
        data = DeclineSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with _as_api_errors():
            decided = actions.decline_erasure_request(
                actor=request.user, request=erasure_request, reason=data.validated_data["reason"]
            )
        return Response(ErasureRequestSerializer(decided).data)


class AssetViewSet(TenantScopedReadOnlyViewSet):
    """Metadata of a subject's stored files; `download` decrypts one. Face embeddings are never listed."""

    queryset_model = Asset
    serializer_class = AssetSerializer
    extra_action_permissions = {"download": "consent.view_asset"}

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.exclude(kind=AssetKind.FACE_EMBEDDING).order_by("subject_id", "id")

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    @action(detail=True)
    def download(self, request: Request, pk: str | None = None) -> HttpResponse:
        asset = self.get_object()
        return asset_attachment(asset, f"asset-{asset.pk}")


def asset_attachment(asset: Asset, filename: str) -> HttpResponse:
    """A stored file decrypted as a download (the caller checked the permission to see it).

    404 once its key is destroyed (erased), a 500 with the reason if it fails its checksum; never cached.
    An output comes as its review preview, inline; a released file or face embedding never
    (consent.previews: released files leave through /api/v1/releases/{id}/download/ only).
    """
    if asset.kind in NEVER_SERVED:
        raise NotFound("This file is not served here; a released file is downloaded through its release.")
    try:
        with _as_api_errors():
            data = vault.read_asset(asset)
    except vault.KeyDestroyedError:
        raise NotFound() from None
    if asset.kind == AssetKind.OUTPUT:
        return preview_response(asset, data)
    response = HttpResponse(data, content_type=asset.content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response
