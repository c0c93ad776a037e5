"""Generation and edit jobs and their outputs over the API (thin: every write is an editing.actions call).

`POST /generation-jobs/` and `POST /edit-jobs/` queue a job (201 with its id
and status; 400 with the reason for a request the model cannot run, 409 when
the subject's consent does not cover the purpose); `GET` and `.../cancel/` are
the job base's (training.api.JobViewSet). An edit takes a stored photo of the
subject by id (JSON), or a new photo and a painted mask as a multipart upload.
`/outputs/` lists what the jobs made, with prompts, scores and review decisions;
the image itself only through `.../download/`, which needs the permission to see
the subject's files (legal reviewers read outputs, never their images).
`.../approve/` and `.../reject/` decide one pending output (editing.review: 409
when it is not pending or the consent no longer covers it); `/outputs/approve/`
and `/outputs/reject/` take `{"ids": [...]}` and answer per id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, MethodNotAllowed, NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from consent.api import asset_attachment
from consent.models import Asset
from editing import actions, review
from editing.models import EditJob, GenerationJob, MaskMode, Output, OutputKind, OutputStatus
from editing.parameters import EDIT_PRESETS, MAX_PROMPT_CHARS, PHOTO_CAPTION_HELP, PROMPT_PRESETS
from personalization.presets import PRESET_NAMES, SCHEDULERS
from tenancy.api import TenantPrimaryKeyRelatedField, TenantScopedViewSet
from tenancy.context import require_tenant
from training.api import JOB_FIELDS, JobSerializer, JobViewSet, job_errors
from training.models import IdentityModel

# Read-only fields both kinds add to the job base's.
MODEL_JOB_FIELDS = ["pipeline_reused", "pipeline_load_seconds", "outputs"]


def _prompt(help_text: str) -> serializers.CharField:
    return serializers.CharField(
        max_length=MAX_PROMPT_CHARS, required=False, allow_blank=True, help_text=help_text
    )


class _ModelJobSerializer(JobSerializer):
    """A kind's request fields (written once, then read back) beside the job base's fields."""

    model = TenantPrimaryKeyRelatedField(
        IdentityModel, source="identity_model", help_text="The model version (an identity model's id)."
    )
    negative_prompt = _prompt("What the images should not show; the same placeholders as the prompt.")
    steps = serializers.IntegerField(required=False, help_text="Sampling steps, 1-150 (default 50).")
    guidance = serializers.FloatField(
        required=False, help_text="Classifier-free guidance, 0-30 (default 7.5)."
    )
    outputs: serializers.PrimaryKeyRelatedField[Output] = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="Ids of what it made."
    )


class GenerationJobSerializer(_ModelJobSerializer):
    prompt = _prompt("{identity}, {class_word} and {style} become the model's tokens; or give prompt_preset.")
    prompt_preset = serializers.ChoiceField(choices=sorted(PROMPT_PRESETS), required=False, allow_blank=True)
    # A declared field leaves the class for the serializer's field list; mypy sees Field.style instead.
    style = serializers.BooleanField(  # type: ignore[assignment]
        required=False, help_text="In the trained style (a multiconcept model)."
    )
    preset = serializers.ChoiceField(
        choices=PRESET_NAMES,
        required=False,
        help_text="The core's sampling preset (default standard: 50 steps; quick: 20 steps, dpm++2m; max: "
        "standard with SD 1.5's second pass); steps, guidance and scheduler given override it.",
    )
    scheduler = serializers.ChoiceField(choices=SCHEDULERS, required=False)
    count = serializers.IntegerField(required=False, help_text="Images, 1-8 (default 1).")
    seed = serializers.IntegerField(
        required=False, allow_null=True, help_text="Image i uses seed + i; drawn at random when absent."
    )
    width = serializers.IntegerField(
        required=False, allow_null=True, help_text="Multiple of 8, half to twice the model's resolution."
    )
    height = serializers.IntegerField(required=False, allow_null=True, help_text="As width.")

    class Meta:
        model = GenerationJob
        fields = [
            *JOB_FIELDS,
            "model",
            "prompt",
            "prompt_preset",
            "style",
            "negative_prompt",
            "preset",
            "scheduler",
            "hires",
            "count",
            "seed",
            "width",
            "height",
            "steps",
            "guidance",
            *MODEL_JOB_FIELDS,
        ]
        read_only_fields = [*JOB_FIELDS, "hires", *MODEL_JOB_FIELDS]


class EditJobSerializer(_ModelJobSerializer):
    source_photo = TenantPrimaryKeyRelatedField(
        Asset,
        required=False,
        allow_null=True,
        help_text="A stored photo of the model's subject (enrollment, reference, or uploaded to edit).",
    )
    source_upload = serializers.FileField(
        write_only=True,
        required=False,
        help_text="Multipart: a new photo of the subject, instead of source_photo.",
    )
    mask_upload = serializers.FileField(
        write_only=True,
        required=False,
        help_text="Multipart: a PNG, white where the photo may change (the photo's size or proportions).",
    )
    mask_mode = serializers.ChoiceField(choices=MaskMode.choices, required=False)
    preset = serializers.ChoiceField(choices=EDIT_PRESETS, required=False, allow_blank=True)
    source_prompt = _prompt(f"Describes the photo; names the subject with {{identity}}. {PHOTO_CAPTION_HELP}")
    target_prompt = _prompt("What the photo should become, naming the subject; or give preset.")

    class Meta:
        model = EditJob
        fields = [
            *JOB_FIELDS,
            "model",
            "source_photo",
            "source_upload",
            "mask_upload",
            "user_mask",
            "mask_mode",
            "preset",
            "source_prompt",
            "target_prompt",
            "negative_prompt",
            "steps",
            "guidance",
            *MODEL_JOB_FIELDS,
        ]
        read_only_fields = [*JOB_FIELDS, "user_mask", *MODEL_JOB_FIELDS]


class _ModelJobViewSet(JobViewSet):
    http_method_names = ["get", "post", "head", "options"]

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return super().refine_queryset(queryset).prefetch_related("outputs")


class GenerationJobViewSet(_ModelJobViewSet):
    """Images of a subject from a model version; `cancel` stops one."""

    queryset_model = GenerationJob
    serializer_class = GenerationJobSerializer

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        with job_errors():
            serializer.instance = actions.queue_generation(
                actor=self.request.user, **serializer.validated_data
            )


class EditJobViewSet(_ModelJobViewSet):
    """Edits of a photo of a subject: JSON with `source_photo`, or multipart with `source_upload`."""

    queryset_model = EditJob
    serializer_class = EditJobSerializer

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        with job_errors():
            serializer.instance = actions.queue_edit(actor=self.request.user, **serializer.validated_data)


class OutputSerializer(serializers.ModelSerializer[Output]):
    model: serializers.PrimaryKeyRelatedField[IdentityModel] = serializers.PrimaryKeyRelatedField(
        source="identity_model", read_only=True
    )
    download = serializers.SerializerMethodField(
        help_text="The image, for members who may see the subject's files."
    )

    class Meta:
        model = Output
        fields = [
            "id",
            "kind",
            "status",
            "status_changed_at",
            "job",
            "subject",
            "model",
            "prompt",
            "seed",
            "parameters",
            "identity_outcome",
            "identity_distance",
            "background_psnr",
            "background_ssim",
            "scores",
            "decided_by",
            "decided_at",
            "decision_reason",
            "vetoed_at",
            "veto_reason",
            "image",
            "source_photo",
            "region_mask",
            "subject_mask",
            "target_mask",
            "download",
            "created_at",
        ]
        read_only_fields = fields

    def get_download(self, output: Output) -> str | None:
        return None if output.image_id is None else reverse("output-download", args=[output.pk])


class OutputFilter(django_filters.FilterSet):
    # By id: the queryset is already the tenant's, so another tenant's id matches nothing.
    job = django_filters.NumberFilter(field_name="job_id")
    subject = django_filters.NumberFilter(field_name="subject_id")
    status = django_filters.ChoiceFilter(choices=OutputStatus.choices)
    kind = django_filters.ChoiceFilter(choices=OutputKind.choices)

    class Meta:
        model = Output
        fields = ["job", "subject", "status", "kind"]


class DecisionSerializer(serializers.Serializer[dict[str, Any]]):
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text=f"Required to reject, optional to approve; at most {review.MAX_REASON_CHARS} characters.",
    )


class BulkDecisionSerializer(DecisionSerializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        help_text=f"Output ids, at most {review.MAX_BULK_OUTPUTS}.",
    )


class DecisionResultSerializer(serializers.Serializer[review.Decision]):
    id = serializers.IntegerField(source="output_id")
    decided = serializers.BooleanField()
    status = serializers.CharField(help_text="The new status when decided.")
    detail = serializers.CharField(source="error", help_text="Why not, when not decided.")
    code = serializers.CharField(help_text="not_found, not_pending, consent_<reason>.")


class BulkDecisionResultSerializer(serializers.Serializer[dict[str, Any]]):
    decided = serializers.IntegerField()
    results = DecisionResultSerializer(many=True)


class DecisionConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "This output cannot be decided now."
    default_code = "conflict"


REVIEW = "editing.review_output"


class OutputViewSet(TenantScopedViewSet):
    """What the jobs made, newest first, with prompts, scores and decisions; filter by job, subject, status,
    kind. Staff approve or reject pending ones, one by one or by a list of ids."""

    queryset_model = Output
    serializer_class = OutputSerializer
    filterset_class = OutputFilter
    http_method_names = ["get", "post", "head", "options"]  # POST for the decisions only
    extra_action_permissions = {
        "download": "consent.view_asset",
        "approve": REVIEW,
        "reject": REVIEW,
        "approve_many": REVIEW,
        "reject_many": REVIEW,
    }

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.order_by("-created_at", "-id")

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        raise MethodNotAllowed("POST", "Outputs are made by generation and edit jobs.")

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY})
    @action(detail=True)
    def download(self, request: Request, pk: str | None = None) -> HttpResponse:
        """The image, decrypted (404 once erased with the subject's data)."""
        output = self.get_object()
        if output.image is None:
            raise NotFound("This output's image was erased with the subject's data.")
        return asset_attachment(output.image, f"output-{output.pk}.png")

    def _decide_one(self, request: Request, decide: Callable[..., list[review.Decision]]) -> Response:
        output = self.get_object()
        body = DecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with review_errors():
            [decision] = decide(
                actor=request.user,
                tenant=output.tenant,
                output_ids=[output.pk],
                reason=body.validated_data.get("reason", ""),
            )
        if not decision.decided:
            raise DecisionConflict({"detail": decision.error, "code": decision.code})
        output.refresh_from_db()
        return Response(self.get_serializer(output).data)

    def _decide_many(self, request: Request, decide: Callable[..., list[review.Decision]]) -> Response:
        body = BulkDecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with review_errors():
            decisions = decide(
                actor=request.user,
                tenant=require_tenant(request),
                output_ids=body.validated_data["ids"],
                reason=body.validated_data.get("reason", ""),
            )
        answer = {"decided": sum(d.decided for d in decisions), "results": decisions}
        return Response(BulkDecisionResultSerializer(answer).data)

    @extend_schema(request=DecisionSerializer, responses=OutputSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        """Approve a pending output (409 when it is not pending or the consent no longer covers it)."""
        return self._decide_one(request, review.approve_outputs)

    @extend_schema(request=DecisionSerializer, responses=OutputSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        """Reject a pending output with a reason (400 without one; 409 when it is not pending)."""
        return self._decide_one(request, review.reject_outputs)

    @extend_schema(
        operation_id="outputs_approve_many",
        request=BulkDecisionSerializer,
        responses=BulkDecisionResultSerializer,
    )
    @action(detail=False, methods=["post"], url_path="approve", url_name="approve-many")
    def approve_many(self, request: Request) -> Response:
        """Approve a list of outputs; the answer says per id whether it was approved, or why not."""
        return self._decide_many(request, review.approve_outputs)

    @extend_schema(
        operation_id="outputs_reject_many",
        request=BulkDecisionSerializer,
        responses=BulkDecisionResultSerializer,
    )
    @action(detail=False, methods=["post"], url_path="reject", url_name="reject-many")
    def reject_many(self, request: Request) -> Response:
        """Reject a list of outputs with one reason; the answer says per id whether it was rejected."""
        return self._decide_many(request, review.reject_outputs)


@contextmanager
def review_errors() -> Iterator[None]:
    """A decision refused as a whole (no reason, too many ids) as a 400 with its reason and code."""
    try:
        yield
    except review.ReviewError as error:
        raise ValidationError({"detail": error.message, "code": error.code}) from None
