"""Jobs over the API: the shared read and cancel of every kind, and the usage meter (thin).

Each kind's viewset (training-jobs, generation-jobs, edit-jobs) subclasses
`JobViewSet`, adds `perform_create` calling its app's action, and inherits the
shared fields, the place in line and `POST .../{id}/cancel/`. `GET /api/v1/jobs/`
lists every kind together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import MethodNotAllowed, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from consent.actions import ConsentRequiredError
from tenancy.api import TenantAPIView, TenantScopedViewSet
from training.jobs import JobError, cancel_job
from training.jobs.dispatch import queue_positions
from training.jobs.metering import Month, usage
from training.jobs.progress import preview_urls
from training.jobs.progress import queue_position as stored_queue_position
from training.models import Job

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
