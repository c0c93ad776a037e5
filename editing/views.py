"""The studio: generate images of a subject from their model, and edit a photo of them.

Thin: the editing actions decide (permission, parameters, consent, hostile uploads) and queue the
jobs; the job page and its socket follow them; these pages offer the choices and show the results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from django.db.models import Prefetch, QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from consent.models import Asset, Purpose, Subject
from consent.status import purposes_in_force
from consent.views.common import can, failure_text
from editing import actions, parameters
from editing.forms import EditForm, GenerateForm
from editing.models import EditJob, GenerationJob, Output
from tenancy.access import get_for_tenant_or_404
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm, tenant_permission_required
from tenancy.permissions import restrict_to_perm
from training.models import IdentityModel, Job
from training.views import REFUSALS

# The studio lists subjects by name to choose from; a tenant with more finds them from the subject page.
MAX_STUDIO_SUBJECTS = 200
MAX_PHOTOS_OFFERED = 48


@dataclass(frozen=True)
class Choice:
    """A subject as the studio offers it: their active model when usable for the purpose, else why not."""

    subject: Subject
    model: IdentityModel | None
    reason: str = ""


def studio_choices(
    request: TenantRequest, purpose: Purpose, *, subject_id: int | None = None
) -> list[Choice]:
    """Every subject the member may see (or the one of `subject_id`), with their active model or the
    reason it cannot be used for `purpose`: no model yet, its files erased, or consent that does not
    cover it (a fixed number of queries: the records and active models come prefetched)."""
    tenant = require_tenant(request)
    candidates = Subject.objects.for_tenant(tenant)
    if subject_id is not None:
        candidates = candidates.filter(pk=subject_id)
    subjects = restrict_to_perm(
        candidates.prefetch_related(
            "records__revocation",
            Prefetch(
                "identity_models",
                queryset=IdentityModel.objects.for_tenant(tenant).filter(is_active=True),
                to_attr="active_models",
            ),
        ).order_by("display_name", "id"),
        request.user,
        tenant,
        "consent.view_subject",
    )[:MAX_STUDIO_SUBJECTS]
    choices = []
    for subject in subjects:
        model = subject.active_models[0] if subject.active_models else None
        covered = purpose in {entry.purpose for entry in purposes_in_force(subject)}
        if model is None:
            reason = "No trained model yet: train one on the subject's page."
        elif not model.is_usable:
            reason = "Their model was erased with their data."
        elif not covered:
            reason = f"Their consent in force does not cover this: “{purpose.label}”."
        else:
            reason = ""
        choices.append(Choice(subject, model, reason))
    return choices


def _usable_models(request: TenantRequest, choices: list[Choice]) -> QuerySet[IdentityModel]:
    ids = [choice.model.pk for choice in choices if choice.model is not None and not choice.reason]
    return (
        IdentityModel.objects.for_tenant(require_tenant(request)).filter(pk__in=ids).select_related("subject")
    )


def _wanted_subject(request: TenantRequest, choices: list[Choice], purpose: Purpose) -> Choice | None:
    """The `?subject=` chosen (added to `choices` when the list stopped before it); another tenant's or
    an unknown id is a 404."""
    raw = request.GET.get("subject", "")
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise Http404("No such subject.")
    for choice in choices:
        if choice.subject.pk == int(raw):
            return choice
    found = studio_choices(request, purpose, subject_id=int(raw))
    if not found:
        raise Http404("No such subject.")
    choices.append(found[0])
    return found[0]


ShownJob = TypeVar("ShownJob", GenerationJob, EditJob)


def _shown_job(request: TenantRequest, model: type[ShownJob], perm: str) -> ShownJob | None:
    """The job whose results `?job=<id>` asks for: one of this tenant's of the page's kind, else a 404."""
    raw = request.GET.get("job", "")
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise Http404("No such job.")
    job = get_for_tenant_or_404(
        model.objects.select_related("subject", "identity_model"), require_tenant(request), pk=int(raw)
    )
    check_perm(request, perm, job)
    return job


def _job_outputs(request: TenantRequest, job: Job) -> list[Output]:
    return list(Output.objects.for_tenant(require_tenant(request)).filter(job=job).order_by("id"))


@require_http_methods(["GET", "POST"])
@tenant_permission_required("editing.add_generationjob")
def studio(request: TenantRequest) -> HttpResponse:
    """Generate: a subject's model, optionally its style, a prompt or preset, count and seed; then the
    job's results with their identity scores, and the same request again with another seed."""
    choices = studio_choices(request, Purpose.GENERATE_IMAGES)
    wanted = _wanted_subject(request, choices, Purpose.GENERATE_IMAGES)
    models = _usable_models(request, choices)
    job = _shown_job(request, GenerationJob, "editing.view_generationjob")
    initial: dict[str, Any] = {}
    if wanted is not None and wanted.model is not None and not wanted.reason:
        initial["model"] = wanted.model.pk
    elif job is not None:
        initial["model"] = job.identity_model_id
    form = GenerateForm(request.POST or None, models=models, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            queued = actions.queue_generation(
                actor=request.user,
                identity_model=data["model"],
                prompt=data["prompt"],
                prompt_preset=data["prompt_preset"],
                style=data["style"],
                preset=data["preset"],
                count=data["count"],
                seed=data["seed"],
            )
        except REFUSALS as error:
            form.add_error(None, failure_text(error))
        else:
            return redirect(f"{reverse('studio')}?job={queued.pk}")
    return render(
        request,
        "studio/generate.html",
        {
            "form": form,
            "choices": choices,
            "has_models": any(not choice.reason for choice in choices),
            "available_count": sum(not choice.reason for choice in choices),
            "prompt_presets": sorted(parameters.PROMPT_PRESETS.items()),
            "job": job,
            "outputs": _job_outputs(request, job) if job is not None else [],
            "sees_files": can(request, "consent.view_asset"),
        },
        status=400 if request.method == "POST" else 200,
    )


def _photos(subject: Subject) -> list[Asset]:
    return list(
        Asset.objects.for_tenant(subject.tenant)
        .filter(subject=subject, kind__in=actions.EDITABLE_PHOTO_KINDS)
        .order_by("-created_at", "-id")[:MAX_PHOTOS_OFFERED]
    )


@require_http_methods(["GET", "POST"])
@tenant_permission_required("editing.add_editjob")
def studio_edit(request: TenantRequest) -> HttpResponse:
    """Edit: one of the subject's photos or a new upload, a preset edit or a target prompt, an optional
    painted mask (static/likeness/studio.js); then before and after with the identity and background
    scores."""
    choices = studio_choices(request, Purpose.EDIT_PHOTOS)
    job = _shown_job(request, EditJob, "editing.view_editjob")
    wanted = _wanted_subject(request, choices, Purpose.EDIT_PHOTOS)
    if wanted is None and job is not None:
        wanted = next((choice for choice in choices if choice.subject.pk == job.subject_id), None)
    form: EditForm | None = None
    photos: list[Asset] = []
    if wanted is not None and wanted.model is not None and not wanted.reason:
        photos = _photos(wanted.subject)
        form = EditForm(
            request.POST or None,
            request.FILES or None,
            models=_usable_models(request, [wanted]),
            photos=[(photo.pk, photo.label or photo.get_kind_display()) for photo in photos],
            initial={"model": wanted.model.pk},
        )
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            by_id = {photo.pk: photo for photo in photos}
            try:
                queued = actions.queue_edit(
                    actor=request.user,
                    identity_model=data["model"],
                    source_photo=by_id.get(data["source_photo"]) if data["source_photo"] else None,
                    source_upload=data["source_upload"],
                    mask_upload=data["mask"],
                    mask_mode=data["mask_mode"],
                    preset=data["preset"],
                    source_prompt=data["source_prompt"],
                    target_prompt=data["target_prompt"],
                )
            except REFUSALS as error:
                form.add_error(None, failure_text(error))
            else:
                return redirect(f"{reverse('studio-edit')}?job={queued.pk}")
    elif request.method == "POST":
        raise Http404("Choose a subject whose model and consent allow editing.")
    return render(
        request,
        "studio/edit.html",
        {
            "form": form,
            "photos": photos,
            "choices": choices,
            "wanted": wanted,
            "not_chosen": wanted is None,
            "available_count": sum(not choice.reason for choice in choices),
            "job": job,
            "outputs": _job_outputs(request, job) if job is not None else [],
            "sees_files": can(request, "consent.view_asset"),
        },
        status=400 if request.method == "POST" else 200,
    )
