"""The release API: `/api/v1/releases/` (create, list, read, download) and `POST /api/v1/verify/`.

Create answers 201 with the release, 400 naming the field for a request out of scope, 409 with the
gate's reason and code when the output or the consent does not allow it. `download` re-runs the gate
(409) and hands out the stamped file as `likeness-release-<id>.<ext>`, audited. `verify` takes a
multipart `image` (the upload routes' body limit; pixels bounded like the photo intake) and answers
`{"found", "valid"}`, plus the release for members of the owning tenant (editing.releases.verify).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from editing.models import Output
from editing.releases import actions, gate, verify
from editing.releases.models import MAX_CAMPAIGN_CHARS, MAX_SCOPE_ITEM_CHARS, MAX_SCOPE_ITEMS, Release
from editing.releases.views import released_attachment
from tenancy.api import TenantPrimaryKeyRelatedField, TenantScopedViewSet

SCOPE_FIELDS = ["campaign", "channels", "territories", "ends_at"]


def _scope_list(help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=MAX_SCOPE_ITEM_CHARS),
        max_length=MAX_SCOPE_ITEMS,
        help_text=help_text,
    )


class ReleaseSerializer(serializers.ModelSerializer[Release]):
    download = serializers.SerializerMethodField(help_text="The stamped file (the gate is checked again).")

    class Meta:
        model = Release
        fields = [
            "id",
            "output",
            "subject",
            "kind",
            "purpose",
            "consent_record",
            "consent_text_sha256",
            *SCOPE_FIELDS,
            "approver",
            "created_by",
            "created_at",
            "sha256",
            "width",
            "height",
            "mime_type",
            "clearance",
            "clearance_signature",
            "clearance_chain",
            "download",
        ]
        read_only_fields = fields

    def get_download(self, release: Release) -> str:
        return reverse("release-download", args=[release.pk])


class ReleaseRequestSerializer(serializers.Serializer[dict[str, Any]]):
    output = TenantPrimaryKeyRelatedField(Output, help_text="An approved output's id.")
    campaign = serializers.CharField(
        max_length=MAX_CAMPAIGN_CHARS, help_text="The campaign or client reference."
    )
    channels = _scope_list("Where it will be used; within the consent's channels when it lists some.")
    territories = _scope_list("Where it will be used; within the consent's territories when it lists some.")
    ends_at = serializers.DateField(
        help_text="The last day of use, YYYY-MM-DD; not after the consent's expiry."
    )


class ReleaseFilter(django_filters.FilterSet):
    subject = django_filters.NumberFilter(field_name="subject_id")
    output = django_filters.NumberFilter(field_name="output_id")

    class Meta:
        model = Release
        fields = ["subject", "output"]


class ReleaseConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "This output cannot be released now."
    default_code = "conflict"


@contextmanager
def release_errors() -> Iterator[None]:
    """A request out of scope as a 400 naming the field; the gate's refusal as a 409 with its reason."""
    try:
        yield
    except actions.ReleaseScopeError as error:
        raise ValidationError({error.field: [error.message], "code": "out_of_scope"}) from None
    except gate.ReleaseRefusedError as refusal:
        raise ReleaseConflict({"detail": refusal.message, "code": refusal.code}) from None


class ReleaseViewSet(TenantScopedViewSet):
    """Releases of approved outputs, newest first; filter by subject or output. POST releases one."""

    queryset_model = Release
    serializer_class = ReleaseSerializer
    filterset_class = ReleaseFilter
    http_method_names = ["get", "post", "head", "options"]
    extra_action_permissions = {"download": "editing.download_release"}

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.order_by("-created_at", "-id")

    @extend_schema(request=ReleaseRequestSerializer, responses={201: ReleaseSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = ReleaseRequestSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        self.perform_create(body)
        release: Release = body.instance  # type: ignore[assignment]  # set by perform_create
        return Response(ReleaseSerializer(release).data, status=status.HTTP_201_CREATED)

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        with release_errors():
            serializer.instance = actions.create_release(actor=self.request.user, **serializer.validated_data)

    @extend_schema(
        responses={(200, "image/png"): OpenApiTypes.BINARY, (200, "image/jpeg"): OpenApiTypes.BINARY}
    )
    @action(detail=True)
    def download(self, request: Request, pk: str | None = None) -> HttpResponse:
        """The stamped file (C2PA manifest, XMP, watermark), if the gate allows it now; audited."""
        release = self.get_object()
        with release_errors():
            released = actions.download_release(actor=request.user, release=release)
        return released_attachment(released)


class VerifyRateThrottle(UserRateThrottle):
    """Each verification decodes the upload several times (watermark sizes): a few a minute per user."""

    scope = "verify"
    rate = "20/min"


class VerifyUploadSerializer(serializers.Serializer[dict[str, Any]]):
    image = serializers.FileField(help_text="A JPEG or PNG, at most the photo upload limit.")


def verification_data(result: verify.Verification) -> dict[str, Any]:
    """The answer's JSON: `found` and `valid` for anyone; the release only for the owning tenant."""
    data = result.public()
    if result.owner and result.release is not None:
        release = result.release
        data.update(
            {
                "matched_by": result.matched_by,
                "reason": result.reason,
                "code": result.reason_code,
                "release": ReleaseSerializer(release).data,
                "subject_name": release.subject.display_name,
            }
        )
    return data


class VerifyView(APIView):
    """Is this image a release of this platform, and is its clearance valid now?"""

    parser_classes = [MultiPartParser]
    throttle_classes = [VerifyRateThrottle]

    @extend_schema(
        request={"multipart/form-data": VerifyUploadSerializer},
        responses=inline_serializer(
            "Verification",
            {
                "found": serializers.BooleanField(),
                "valid": serializers.BooleanField(),
                "matched_by": serializers.CharField(help_text="sha256, manifest or watermark (owners only)."),
                "reason": serializers.CharField(help_text="Why it is not valid (owners only)."),
                "code": serializers.CharField(help_text="The gate's code (owners only)."),
                "release": ReleaseSerializer(help_text="Owners only."),
                "subject_name": serializers.CharField(help_text="Owners only."),
            },
        ),
    )
    def post(self, request: Request) -> Response:
        upload = VerifyUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        try:
            data = verify.read_upload(upload.validated_data["image"])
            result = verify.verify_image(actor=request.user, data=data)
        except verify.VerifyError as error:
            raise ValidationError({"image": [str(error)]}) from None
        return Response(verification_data(result))
