"""The job page: live progress of one job of any kind, and its cancel button (thin: writes go through
training.jobs)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from tenancy.access import get_for_tenant_or_404, tenant_object_view
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm, tenant_member_required
from tenancy.permissions import has_perm
from tenancy.templatetags.ui import tone
from training.forms import CancelForm
from training.jobs import cancel_job
from training.jobs.progress import snapshot
from training.models import Job, JobStatus


def _job(request: TenantRequest, pk: int, perm: str) -> Job:
    job = get_for_tenant_or_404(Job.objects.select_related("subject"), require_tenant(request), pk=pk)
    check_perm(request, perm, job)
    return job


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
