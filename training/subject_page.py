"""The studio's part of a subject's page: reference set, "Train", model versions, recent jobs, outputs.

The subject page (consent.views.subjects.subject_detail) is where staff follow a
subject from photos to approved images; this module gathers the training and
editing sections with a fixed number of queries whatever the rows, each one only
for the roles that may see it (legal reviewers read jobs, versions and outputs,
never an image).
"""

from __future__ import annotations

from typing import Any

from consent.models import Purpose, Subject
from consent.status import PurposeInForce
from consent.views.common import can
from editing.models import Output
from tenancy.context import TenantRequest, require_tenant
from training.actions import allowed_base_model
from training.actions.references import current_photo_ids, is_current, latest_reference_set
from training.forms import CaptionForm, TrainForm
from training.jobs.dispatch import queue_positions
from training.models import IdentityModel, Job, JobStatus, ReferenceSetStatus

RECENT_JOBS = 10
RECENT_OUTPUTS = 12
MODEL_VERSIONS_SHOWN = 20


def jobs_with_positions(request: TenantRequest, jobs: list[Job]) -> list[tuple[Job, int | None]]:
    """Each job with its place in line: one reading of the fair queue for the whole list, and none at
    all when nothing in it waits."""
    waiting = any(job.status == JobStatus.QUEUED and job.dispatched_at is None for job in jobs)
    positions = queue_positions(require_tenant(request)) if waiting else {}
    return [(job, positions.get(job.pk)) for job in jobs]


def subject_studio(
    request: TenantRequest, subject: Subject, *, erased: bool, in_force: list[PurposeInForce]
) -> dict[str, Any]:
    """The template context of the studio sections (see templates/consent/subject_detail.html)."""
    tenant = require_tenant(request)
    purposes = {entry.purpose for entry in in_force}
    sees_files = can(request, "consent.view_asset")
    # A section the role may not see stays None (the template leaves it out).
    context: dict[str, Any] = {
        "sees_files": sees_files,
        "erased": erased,
        "reference": None,
        "train_form": None,
        "models": None,
        "jobs": None,
        "outputs": None,
    }

    if can(request, "training.view_referenceset"):
        reference_set = latest_reference_set(subject, allowed_base_model(None))
        items = list(reference_set.items.order_by("name")) if reference_set is not None else []
        editable = (
            reference_set is not None
            and reference_set.status == ReferenceSetStatus.READY
            and can(request, "training.change_referenceitem")
            and not erased
        )
        context["reference"] = {
            "set": reference_set,
            "items": [
                (item, CaptionForm(initial={"caption": item.caption}, prefix=f"item-{item.pk}"))
                for item in items
            ],
            "stale": reference_set is not None and not is_current(reference_set, current_photo_ids(subject)),
            "editable": editable,
            "warnings_by_photo": {item.photo_id: item.warnings for item in items if item.photo_id},
        }
        context["can_build"] = (
            can(request, "training.add_referenceset") and not erased and Purpose.TRAIN_IDENTITY in purposes
        )

    if can(request, "training.add_trainingjob") and not erased:
        context["train_form"] = TrainForm(tenant=tenant)
        context["train_refused"] = (
            ""
            if Purpose.TRAIN_IDENTITY in purposes
            else "The subject's consent in force does not cover training an identity model."
        )

    if can(request, "training.view_identitymodel"):
        context["models"] = list(
            IdentityModel.objects.for_tenant(tenant)
            .filter(subject=subject)
            .select_related("activated_by")
            .order_by("-version")[:MODEL_VERSIONS_SHOWN]
        )
        context["can_promote"] = can(request, "training.activate_identitymodel") and not erased

    if can(request, "training.view_job"):
        jobs = list(
            Job.objects.for_tenant(tenant)
            .filter(subject=subject)
            .select_related("requested_by")
            .order_by("-created_at", "-id")[:RECENT_JOBS]
        )
        context["jobs"] = jobs_with_positions(request, jobs)

    if can(request, "editing.view_output"):
        context["outputs"] = list(
            Output.objects.for_tenant(tenant)
            .filter(subject=subject)
            .order_by("-created_at", "-id")[:RECENT_OUTPUTS]
        )
    context["can_generate"] = (
        can(request, "editing.add_generationjob") and not erased and Purpose.GENERATE_IMAGES in purposes
    )
    context["can_edit"] = (
        can(request, "editing.add_editjob") and not erased and Purpose.EDIT_PHOTOS in purposes
    )
    return context
