"""The training app's pages: jobs (list, live page, cancel), training from the subject page, the
reference set's captions and rebuild, and the model registry. Thin: every write is an action's
(training.actions, training.jobs), every refusal is the action's own reason."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from consent.actions import ConsentRequiredError
from consent.models import Subject
from consent.views.common import failure_text, get_subject
from tenancy.access import get_for_tenant_or_404, tenant_object_view
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm, tenant_member_required, tenant_permission_required
from tenancy.pagination import keyset_page, page_without_count
from tenancy.permissions import has_perm
from tenancy.templatetags.ui import tone
from training import actions
from training.forms import CancelForm, CaptionForm, TrainForm
from training.jobs import JobError, cancel_job
from training.jobs.kinds import job_kinds
from training.jobs.progress import snapshot
from training.models import IdentityModel, Job, JobStatus, ReferenceItem
from training.subject_page import jobs_with_positions

# What a refused action raises; each carries a `message` for the person who asked.
REFUSALS = (JobError, actions.TrainingActionError, ConsentRequiredError)
JOBS_PER_PAGE = 25
MODELS_PER_PAGE = 25


def _subject_filter(request: TenantRequest) -> Subject | None:
    """The `?subject=` a list is narrowed to: one of this tenant's subjects, else a 404 (never a guess)."""
    raw = request.GET.get("subject", "")
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise Http404("No such subject.")
    return get_subject(request, int(raw))


def _job(request: TenantRequest, pk: int, perm: str) -> Job:
    job = get_for_tenant_or_404(Job.objects.select_related("subject"), require_tenant(request), pk=pk)
    check_perm(request, perm, job)
    return job


# Where each kind's results are shown: (URL name, query parameter, link text, permission to follow it).
RESULT_PAGES = {
    "generation": ("studio", "job", "Its images in the studio", "editing.add_generationjob"),
    "edit": ("studio-edit", "job", "Before and after in the studio", "editing.add_editjob"),
    "training": ("models", "subject", "The subject's model versions", "training.view_identitymodel"),
}


def _results_link(request: TenantRequest, job: Job) -> dict[str, str]:
    page = RESULT_PAGES.get(job.kind)
    if page is None or not has_perm(request.user, require_tenant(request), page[3]):
        return {}
    name, parameter, label, _ = page
    value = job.pk if parameter == "job" else job.subject_id
    return {"results_url": f"{reverse(name)}?{parameter}={value}", "results_label": label}


@require_GET
@tenant_member_required
@tenant_object_view(Job)
def job_detail(request: TenantRequest, pk: int) -> HttpResponse:
    """Server-rendered from the stored snapshot; the page's script then follows the job's socket."""
    job = _job(request, pk, "training.view_job")
    tenant = require_tenant(request)
    return render(
        request,
        "training/job_detail.html",
        {
            "job": job,
            "kind_label": job.kind.replace("_", " ").capitalize(),
            "snapshot": snapshot(job),
            "status_tones": {status: tone(status) for status in JobStatus.values},
            "can_cancel": has_perm(request.user, tenant, "training.cancel_job", job),
            "can_see_previews": has_perm(request.user, tenant, "consent.view_asset"),
            **_results_link(request, job),
        },
    )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Job)
def job_cancel(request: TenantRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation (and an optional reason); POST cancels."""
    job = _job(request, pk, "training.cancel_job")
    form = CancelForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        was_running = job.cancel_requested_at is None and job.status == JobStatus.RUNNING
        job = cancel_job(actor=request.user, job=job, reason=form.cleaned_data["reason"])
        if job.status == JobStatus.CANCELLED:
            messages.success(request, "The job is cancelled.")
        elif was_running:
            messages.info(request, "The job stops after its current step.")
        return redirect("job-detail", pk=job.pk)
    return render(
        request,
        "components/confirm.html",
        {
            "subject": job.subject,
            "title": f"Cancel job #{job.pk}",
            "explanation": "A queued job is cancelled at once; a running one stops after its current step "
            "and keeps nothing it was making.",
            "form": form,
            "button": "Cancel job",
            "danger": True,
        },
        status=400 if request.method == "POST" else 200,
    )


@require_GET
@tenant_permission_required("training.view_job")
def job_list(request: TenantRequest) -> HttpResponse:
    """Every job of the tenant, newest first, filtered by status, kind and subject; one reading of the
    fair queue per page gives the places in line."""
    tenant = require_tenant(request)
    subject = _subject_filter(request)
    kinds = {kind.name: kind.label for kind in job_kinds()}
    status = request.GET.get("status", "")
    kind = request.GET.get("kind", "")
    jobs = (
        Job.objects.for_tenant(tenant)
        .select_related("subject", "requested_by")
        .order_by("-created_at", "-id")
    )
    if status in JobStatus.values:
        jobs = jobs.filter(status=status)
    if kind in kinds:
        jobs = jobs.filter(kind=kind)
    if subject is not None:
        jobs = jobs.filter(subject=subject)
    page = keyset_page(request, jobs, JOBS_PER_PAGE)
    return render(
        request,
        "training/job_list.html",
        {
            "page_obj": page,
            "rows": jobs_with_positions(request, list(page.object_list)),
            "statuses": JobStatus.choices,
            "kinds": sorted(kinds.items()),
            "status": status,
            "kind": kind,
            "subject": subject,
            "filtered": bool(status or kind or subject),
        },
    )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Subject)
def subject_train(request: TenantRequest, pk: int) -> HttpResponse:
    """Queue a training run (the subject page's form posts here) and go to its live job page. A refusal
    (no consent, the reference set still building...) shows the form again with the action's reason."""
    subject = get_subject(request, pk, "training.add_trainingjob")
    form = TrainForm(request.POST or None, tenant=require_tenant(request))
    if request.method == "POST" and form.is_valid():
        try:
            job = actions.queue_training_job(
                actor=request.user,
                subject=subject,
                method=form.cleaned_data["method"],
                style_set=form.cleaned_data["style_set"],
                preset=form.cleaned_data["preset"],
            )
        except REFUSALS as error:
            form.add_error(None, failure_text(error))
        else:
            messages.success(request, f"Training job #{job.pk} queued.")
            return redirect("job-detail", pk=job.pk)
    return render(
        request,
        "training/train.html",
        {"subject": subject, "train_form": form},
        status=400 if request.method == "POST" else 200,
    )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Subject)
def reference_set_build(request: TenantRequest, pk: int) -> HttpResponse:
    """Build (or rebuild, when the photos changed) the subject's reference set on the worker; GET
    confirms."""
    subject = get_subject(request, pk, "training.add_referenceset")
    failure = ""
    if request.method == "POST":
        try:
            reference_set, started = actions.request_reference_set(actor=request.user, subject=subject)
        except REFUSALS as error:
            failure = failure_text(error)
        else:
            if started:
                messages.info(
                    request,
                    f"Building reference set version {reference_set.version}: check its captions when ready.",
                )
            else:
                messages.info(
                    request,
                    f"Reference set version {reference_set.version} matches the current photos.",
                )
            return redirect(reverse("consent-subject", args=[subject.pk]) + "#reference-set")
    return render(
        request,
        "components/confirm.html",
        {
            "subject": subject,
            "title": "Build the reference set",
            "explanation": "The worker crops, masks and captions the subject's current reference photos for "
            "training; check the captions once it is ready.",
            "button": "Build",
            "failure": failure,
        },
        status=400 if failure else 200,
    )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(ReferenceItem)
def reference_item_caption(request: TenantRequest, pk: int) -> HttpResponse:
    """Save one caption (the subject page's forms post here; the action keeps the set's token, and
    versions a set a job already used). A refusal shows the caption again with the reason."""
    item = get_for_tenant_or_404(
        ReferenceItem.objects.select_related("reference_set__subject"), require_tenant(request), pk=pk
    )
    check_perm(request, "training.change_referenceitem", item)
    subject_id = item.reference_set.subject_id
    form = CaptionForm(request.POST or None, prefix=f"item-{item.pk}", initial={"caption": item.caption})
    if request.method == "POST" and form.is_valid():
        try:
            changed = actions.change_caption(
                actor=request.user, item=item, caption=form.cleaned_data["caption"]
            )
        except REFUSALS as error:
            form.add_error(None, failure_text(error))
        else:
            if changed.reference_set_id != item.reference_set_id:
                messages.success(
                    request,
                    f"Caption of {item.name} saved as a new version of the reference set (a training job "
                    "used the previous one, which stays as it was).",
                )
            else:
                messages.success(request, f"Caption of {item.name} saved.")
            return redirect(reverse("consent-subject", args=[subject_id]) + "#reference-set")
    return render(
        request,
        "training/caption.html",
        {
            "item": item,
            "subject": item.reference_set.subject,
            "form": form,
            "sees_files": has_perm(request.user, require_tenant(request), "consent.view_asset"),
        },
        status=400 if request.method == "POST" else 200,
    )


@require_GET
@tenant_permission_required("training.view_identitymodel")
def model_list(request: TenantRequest) -> HttpResponse:
    """The model registry: every subject's versions with their evaluation, the active one marked."""
    tenant = require_tenant(request)
    subject = _subject_filter(request)
    models = (
        IdentityModel.objects.for_tenant(tenant)
        .select_related("subject", "activated_by")
        .order_by("subject__display_name", "subject_id", "-version")
    )
    if subject is not None:
        models = models.filter(subject=subject)
    page = page_without_count(models, request.GET.get("page"), MODELS_PER_PAGE)
    return render(
        request,
        "training/model_list.html",
        {
            "page_obj": page,
            "subject": subject,
            "can_promote": has_perm(request.user, tenant, "training.activate_identitymodel"),
        },
    )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(IdentityModel)
def model_activate(request: TenantRequest, pk: int) -> HttpResponse:
    """GET confirms, POST makes the version its subject's active one (audited by the action)."""
    tenant = require_tenant(request)
    model = get_for_tenant_or_404(IdentityModel.objects.select_related("subject"), tenant, pk=pk)
    check_perm(request, "training.activate_identitymodel", model)
    failure = ""
    if request.method == "POST":
        try:
            actions.activate_identity_model(actor=request.user, model=model)
        except REFUSALS as error:
            failure = failure_text(error)
        else:
            messages.success(
                request, f"Version {model.version} is now {model.subject.display_name}'s active model."
            )
            return redirect(reverse("models") + f"?subject={model.subject_id}")
    return render(
        request,
        "components/confirm.html",
        {
            "subject": model.subject,
            "title": f"Make version {model.version} active",
            "explanation": "Generation and edits of this subject then use this version; the version active "
            "now stays in the registry and can be made active again.",
            "button": "Make active",
            "failure": failure,
        },
        status=400 if failure else 200,
    )
