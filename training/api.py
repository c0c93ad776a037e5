"""The training app over the API (thin: every write is a training.actions or training.jobs call).

Jobs: the shared read and cancel of every kind, and the usage meter. Each
kind's viewset (training-jobs, generation-jobs, edit-jobs) subclasses
`JobViewSet`, adds `perform_create` calling its app's action, and inherits the
shared fields, the place in line and `POST .../{id}/cancel/`. `GET /api/v1/jobs/`
lists every kind together.

Training: reference sets (built on request, captions edited per item), style
sets (multipart upload of a new version), training jobs, and the model
registry (versions per subject, `activate`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from django.db.models import Count, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import MethodNotAllowed, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from consent.actions import ConsentRequiredError
from consent.models import Subject
from personalization.presets import PRESET_NAMES
from tenancy.api import TenantAPIView, TenantPrimaryKeyRelatedField, TenantScopedViewSet
from training.actions import (
    MAX_CAPTION_CHARS,
    StylePhotosRejectedError,
    TrainingActionError,
    activate_identity_model,
    change_caption,
    create_style_set,
    queue_training_job,
    request_reference_set,
)
from training.actions.references import current_photo_ids, is_current
from training.actions.styles import MAX_NAME_CHARS as MAX_STYLE_NAME_CHARS
from training.jobs import JobError, cancel_job
from training.jobs.dispatch import queue_positions
from training.jobs.metering import Month, usage
from training.jobs.progress import preview_urls
from training.jobs.progress import queue_position as stored_queue_position
from training.models import (
    IdentityModel,
    Job,
    ReferenceItem,
    ReferenceSet,
    StylePhoto,
    StyleSet,
    TrainingJob,
    TrainingMethod,
)

MAX_OVERRIDES = 32

JOB_FIELDS = [
    "id",
    "kind",
    "subject",
    "status",
    "phase",
    "step",
    "total_steps",
    "progress",
    "eta_seconds",
    "losses",
    "learning_rates",
    "loss_history",
    "notices",
    "queue_position",
    "cancel_requested",
    "error_code",
    "error_message",
    "created_at",
    "started_at",
    "finished_at",
    "previews",
    "attempts",
    "worker_host",
    "device",
    "wall_seconds",
    "device_seconds",
    "peak_memory_bytes",
    "steps_done",
]


class JobSerializer(serializers.ModelSerializer[Job]):
    """The fields every kind shares; a kind's serializer subclasses it and adds its own."""

    progress = serializers.SerializerMethodField(help_text="0..1")
    queue_position = serializers.SerializerMethodField(
        help_text="1 = the next job to start, across every brand's waiting jobs; null once it is handed over."
    )
    cancel_requested = serializers.SerializerMethodField()
    previews = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = JOB_FIELDS
        read_only_fields = JOB_FIELDS

    def get_progress(self, job: Job) -> float:
        return round(job.progress_fraction, 4)

    def get_queue_position(self, job: Job) -> int | None:
        positions = self.context.get("queue_positions")
        if positions is None:
            return stored_queue_position(job)
        return positions.get(job.pk)

    def get_cancel_requested(self, job: Job) -> bool:
        return job.cancel_requested_at is not None

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_previews(self, job: Job) -> list[dict[str, Any]]:
        return preview_urls(job)


@contextmanager
def job_errors() -> Iterator[None]:
    """A kind's action failures as API errors: 400 with the reason, 409 when consent does not cover it."""
    from consent.api import ConsentConflict

    try:
        yield
    except ConsentRequiredError as error:
        raise ConsentConflict({"detail": error.message, "reason": error.reason.value}) from None
    except JobError as error:
        raise ValidationError({"detail": error.message, "code": error.code}) from None


class CancelSerializer(serializers.Serializer[dict[str, str]]):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200)


class JobViewSet(TenantScopedViewSet):
    """Base of the job viewsets: list and read, `cancel`; kinds add `perform_create`."""

    serializer_class = JobSerializer
    http_method_names = ["get", "head", "options"]
    extra_action_permissions = {"cancel": "training.cancel_job"}

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.prefetch_related("previews").order_by("-created_at", "-id")

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        tenant = getattr(self.request, "tenant", None)
        if getattr(self, "action", None) == "list" and tenant is not None:
            # One reading of the queue for the whole page, not one per row.
            context["queue_positions"] = queue_positions(tenant)
        return context

    @extend_schema(request=CancelSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel a queued job at once, or ask a running one to stop after its current step (202)."""
        job = self.get_object()
        body = CancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        job = cancel_job(actor=request.user, job=job, reason=body.validated_data.get("reason", ""))
        return Response(self.get_serializer(job).data, status=200 if not job.is_active else 202)


class AnyJobViewSet(JobViewSet):
    """Every job of the tenant, whatever its kind (the jobs list)."""

    queryset_model = Job
    http_method_names = ["get", "post", "head", "options"]  # POST only for the cancel action

    def perform_create(self, serializer: Any) -> None:
        # POST is open for the cancel action only: jobs are created through their kind's endpoint.
        raise MethodNotAllowed(
            "POST", "Create a job through its kind: training-jobs, generation-jobs, edit-jobs."
        )


class UsageView(TenantAPIView):
    """What the tenant's jobs cost in a month, per kind: the base of a cost per tenant."""

    method_permissions = {"GET": "training.view_usage", "HEAD": "training.view_usage"}

    @extend_schema(
        parameters=[
            OpenApiParameter("month", OpenApiTypes.STR, description="YYYY-MM (UTC); this month if absent")
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("month")
        try:
            month = Month.parse(raw) if raw else Month.current()
        except ValueError as error:
            raise ValidationError({"month": [str(error)]}) from None
        return Response(usage(request.tenant, month))  # type: ignore[attr-defined]


# --- the training app: reference sets, style sets, training jobs, the model registry ---------------------
@contextmanager
def training_errors() -> Iterator[None]:
    """The training actions' refusals as API errors (400 with the reason and a code; 409 for consent)."""
    with job_errors():
        try:
            yield
        except StylePhotosRejectedError as error:
            raise ValidationError(
                {
                    "detail": error.message,
                    "code": error.code,
                    "rejected": [asdict(photo) for photo in error.rejected],
                }
            ) from None
        except TrainingActionError as error:
            raise ValidationError({"detail": error.message, "code": error.code}) from None


class SubjectFilteredViewSet(TenantScopedViewSet):
    """`?subject=<id>` narrows a list to one subject (an id of another tenant simply matches nothing)."""

    def by_subject(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        raw = self.request.query_params.get("subject")
        if raw is None:
            return queryset
        if not raw.isdigit() or len(raw) > 18:
            raise ValidationError({"subject": ["A subject id (a whole number)."]})
        return queryset.filter(subject_id=int(raw))

    @extend_schema(
        parameters=[OpenApiParameter("subject", OpenApiTypes.INT, description="Only this subject's rows")]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)


class ReferenceItemSerializer(serializers.ModelSerializer[ReferenceItem]):
    caption = serializers.CharField(
        max_length=MAX_CAPTION_CHARS * 2,  # whitespace is collapsed before the action's own limit
        help_text="Must keep the set's identifier token; on a set a job used, a new version.",
    )

    class Meta:
        model = ReferenceItem
        fields = [
            "id",
            "reference_set",
            "name",
            "caption",
            "photo",
            "crop",
            "face_mask",
            "quality",
            "warnings",
        ]
        read_only_fields = [
            "id",
            "reference_set",
            "name",
            "photo",
            "crop",
            "face_mask",
            "quality",
            "warnings",
        ]


class ReferenceSetSerializer(serializers.ModelSerializer[ReferenceSet]):
    subject = TenantPrimaryKeyRelatedField(Subject)
    base_model = serializers.CharField(
        required=False, allow_blank=True, max_length=500, help_text="Default: the service's base model."
    )
    is_current = serializers.SerializerMethodField(
        help_text="Built from exactly the subject's reference photos of now (false: the photos changed)."
    )
    used_by_jobs = serializers.SerializerMethodField(
        help_text="Training jobs pinned it: never changed again."
    )
    items = ReferenceItemSerializer(many=True, read_only=True)

    class Meta:
        model = ReferenceSet
        fields = [
            "id",
            "subject",
            "version",
            "status",
            "error_message",
            "base_model",
            "resolution",
            "token",
            "class_word",
            "photo_ids",
            "is_current",
            "rejected",
            "dataset_hash",
            "derived_from",
            "used_by_jobs",
            "created_at",
            "built_at",
            "items",
        ]
        read_only_fields = [name for name in fields if name not in ("subject", "base_model")]

    def get_is_current(self, reference_set: ReferenceSet) -> bool:
        # One reading of a subject's photos per response, however many of their sets it lists.
        photos: dict[int, list[int]] = self.context.setdefault("current_photo_ids", {})
        if reference_set.subject_id not in photos:
            photos[reference_set.subject_id] = current_photo_ids(reference_set.subject)
        return is_current(reference_set, photos[reference_set.subject_id])

    def get_used_by_jobs(self, reference_set: ReferenceSet) -> bool:
        # Annotated by the viewset (one query per page); a set serialized on its own asks itself.
        annotated = getattr(reference_set, "job_count", None)
        return reference_set.training_jobs.exists() if annotated is None else annotated > 0


class ReferenceSetViewSet(SubjectFilteredViewSet):
    """A subject's reference sets; POST builds one from the current photos (202) or returns it (200)."""

    queryset_model = ReferenceSet
    serializer_class = ReferenceSetSerializer
    http_method_names = ["get", "post", "head", "options"]
    build_started = False

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        queryset = queryset.select_related("subject__tenant").prefetch_related("items")
        queryset = queryset.annotate(job_count=Count("training_jobs"))
        return self.by_subject(queryset).order_by("-id")

    @extend_schema(responses={200: ReferenceSetSerializer, 202: ReferenceSetSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Build the subject's set from their current photos on the worker (202, status `building`), or
        return the latest version when it is already built or building from exactly those photos (200)."""
        response = super().create(request, *args, **kwargs)
        response.status_code = 202 if self.build_started else 200
        return response

    def perform_create(self, serializer: Any) -> None:
        data = serializer.validated_data
        with training_errors():
            serializer.instance, self.build_started = request_reference_set(
                actor=self.request.user, subject=data["subject"], base_model=data.get("base_model") or None
            )


class ReferenceItemViewSet(TenantScopedViewSet):
    """One prepared photo of a reference set; PATCH changes its caption (a used set gets a new version)."""

    queryset_model = ReferenceItem
    serializer_class = ReferenceItemSerializer
    http_method_names = ["get", "patch", "head", "options"]

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("reference_set").order_by("reference_set_id", "name")

    def perform_update(self, serializer: Any) -> None:
        with training_errors():
            serializer.instance = change_caption(
                actor=self.request.user,
                item=serializer.instance,
                caption=serializer.validated_data["caption"],
            )


class StylePhotoSerializer(serializers.ModelSerializer[StylePhoto]):
    class Meta:
        model = StylePhoto
        fields = ["id", "width", "height", "size_bytes", "content_type", "largest_face_px"]
        read_only_fields = fields


class StyleSetSerializer(serializers.ModelSerializer[StyleSet]):
    photos = serializers.ListField(
        child=serializers.FileField(),
        write_only=True,
        min_length=1,
        help_text="The style photos (multipart field `photos`, repeated): no recognisable face.",
    )
    style_photos = StylePhotoSerializer(source="photos", many=True, read_only=True)

    class Meta:
        model = StyleSet
        fields = ["id", "name", "version", "created_at", "photos", "style_photos"]
        read_only_fields = ["id", "version", "created_at", "style_photos"]


class StyleSetViewSet(TenantScopedViewSet):
    """The tenant's style sets (multiconcept); POST uploads a new version of the named set."""

    queryset_model = StyleSet
    serializer_class = StyleSetSerializer
    http_method_names = ["get", "post", "head", "options"]

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.prefetch_related("photos").order_by("name", "-version")

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": MAX_STYLE_NAME_CHARS},
                    "photos": {"type": "array", "items": {"type": "string", "format": "binary"}},
                },
                "required": ["name", "photos"],
            }
        },
        responses={201: StyleSetSerializer},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Every photo is checked (hostile input, then no face large enough to be a likeness); one refused
        photo refuses the version (400, each reason listed) and nothing is stored."""
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: Any) -> None:
        data = serializer.validated_data
        with training_errors():
            serializer.instance = create_style_set(
                actor=self.request.user,
                tenant=self.request.tenant,  # type: ignore[attr-defined]
                name=data["name"],
                uploads=data["photos"],
            )


class IdentityModelSerializer(serializers.ModelSerializer[IdentityModel]):
    is_usable = serializers.BooleanField(read_only=True, help_text="False once its files were erased.")

    class Meta:
        model = IdentityModel
        fields = [
            "id",
            "subject",
            "version",
            "job",
            "method",
            "base_model",
            "model_kind",
            "is_active",
            "is_usable",
            "artifact",
            "manifest",
            "evaluation",
            "created_at",
            "activated_at",
            "activated_by",
        ]
        read_only_fields = fields


class IdentityModelViewSet(SubjectFilteredViewSet):
    """Trained versions of subjects' identity models; `activate` chooses the one generation uses."""

    queryset_model = IdentityModel
    serializer_class = IdentityModelSerializer
    http_method_names = ["get", "post", "head", "options"]  # POST only for the activate action
    extra_action_permissions = {"activate": "training.activate_identitymodel"}

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return self.by_subject(queryset).order_by("subject_id", "-version")

    def perform_create(self, serializer: Any) -> None:
        raise MethodNotAllowed("POST", "Versions are made by training jobs: POST /api/v1/training-jobs/.")

    @extend_schema(request=None, responses={200: IdentityModelSerializer})
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, pk: str | None = None) -> Response:
        """Make this version its subject's active one (audited); the one active before is kept, inactive."""
        with training_errors():
            model = activate_identity_model(actor=request.user, model=self.get_object())
        return Response(self.get_serializer(model).data)


class TrainingJobSerializer(JobSerializer):
    subject = TenantPrimaryKeyRelatedField(Subject)
    method = serializers.ChoiceField(choices=TrainingMethod.choices)
    style_set = TenantPrimaryKeyRelatedField(
        StyleSet, required=False, allow_null=True, help_text="Required by multiconcept."
    )
    preset = serializers.ChoiceField(choices=PRESET_NAMES, default="quick")
    overrides = serializers.DictField(
        required=False,
        default=dict,
        help_text="Settings of the preset to change, each checked for type and range.",
    )
    base_model = serializers.CharField(
        required=False, allow_blank=True, max_length=500, help_text="Default: the service's base model."
    )
    identity_model = serializers.SerializerMethodField(
        help_text="The version this run made, once it succeeded."
    )

    class Meta(JobSerializer.Meta):
        model = TrainingJob
        fields = [
            *JOB_FIELDS,
            "method",
            "base_model",
            "preset",
            "overrides",
            "resolved_settings",
            "reference_set",
            "style_set",
            "identity_model",
        ]
        read_only_fields = [*JOB_FIELDS, "resolved_settings", "reference_set"]

    def validate_overrides(self, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_OVERRIDES:
            raise ValidationError(f"At most {MAX_OVERRIDES} settings can be overridden.")
        return value

    def get_identity_model(self, job: TrainingJob) -> int | None:
        return (
            IdentityModel.objects.for_tenant(job.tenant).filter(job=job).values_list("pk", flat=True).first()
        )


class TrainingJobViewSet(JobViewSet):
    """Training runs: POST queues one (201); GET follows it; POST .../cancel/ stops it (inherited)."""

    queryset_model = TrainingJob
    serializer_class = TrainingJobSerializer
    http_method_names = ["get", "post", "head", "options"]

    def perform_create(self, serializer: Any) -> None:
        data = serializer.validated_data
        with training_errors():
            serializer.instance = queue_training_job(
                actor=self.request.user,
                subject=data["subject"],
                method=data["method"],
                style_set=data.get("style_set"),
                preset=data["preset"],
                overrides=data["overrides"],
                base_model=data.get("base_model") or None,
            )
