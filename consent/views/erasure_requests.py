"""The two-person rule's pages: erasures staff started, confirmed or declined by a tenant admin."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from consent import actions
from consent.forms import DeclineForm
from consent.models import ErasureRequest
from consent.views.common import CLOSED_REQUESTS_SHOWN, can
from tenancy.access import get_for_tenant_or_404, tenant_object_view
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm, tenant_member_required, tenant_permission_required


@require_GET
@tenant_permission_required("consent.view_erasurerequest")
def erasure_request_list(request: TenantRequest) -> HttpResponse:
    """Pending requests (each with its deadline), then the most recent decided ones."""
    requests = ErasureRequest.objects.for_tenant(require_tenant(request)).select_related(
        "subject", "requested_by", "decided_by"
    )
    return render(
        request,
        "consent/erasure_request_list.html",
        {
            "pending": requests.filter(state=ErasureRequest.State.PENDING).order_by("deadline", "id"),
            "closed": requests.exclude(state=ErasureRequest.State.PENDING).order_by("-decided_at", "-id")[
                :CLOSED_REQUESTS_SHOWN
            ],
            "closed_shown": CLOSED_REQUESTS_SHOWN,
            "can_confirm": can(request, "consent.confirm_erasurerequest"),
        },
    )


def _erasure_request(request: TenantRequest, pk: int) -> ErasureRequest:
    found = get_for_tenant_or_404(
        ErasureRequest.objects.select_related(
            "subject__retention_schedule", "requested_by", "decided_by", "revocation__record"
        ),
        require_tenant(request),
        pk=pk,
    )
    check_perm(request, "consent.confirm_erasurerequest", found)
    return found


def _decision_page(
    request: TenantRequest,
    erasure_request: ErasureRequest,
    decision: str,
    form: forms.Form | None,
    failure: str,
) -> HttpResponse:
    return render(
        request,
        "consent/erasure_request_decide.html",
        {
            "erasure_request": erasure_request,
            "subject": erasure_request.subject,
            "decision": decision,
            "form": form,
            "failure": failure,
        },
        status=400 if failure or (form is not None and form.errors) else 200,
    )


def _confirmed_message(decided: ErasureRequest) -> str:
    if decided.state == ErasureRequest.State.SUPERSEDED:
        return "A consent of the subject is in force again: nothing was erased and the request is closed."
    if decided.trigger == ErasureRequest.Trigger.PURPOSE_SATISFIED:
        return "Confirmed: the purpose is marked satisfied and the retention schedule's clock has started."
    if decided.certificate is None:
        return "Confirmed: nothing of the subject was stored any more."
    return "Confirmed: the subject's key is destroyed; the files are being deleted."


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(ErasureRequest)
def erasure_request_confirm(request: TenantRequest, pk: int) -> HttpResponse:
    """A tenant admin other than the requester confirms an erasure that staff started."""
    erasure_request = _erasure_request(request, pk)
    failure = ""
    if request.method == "POST":
        try:
            decided = actions.confirm_erasure_request(actor=request.user, request=erasure_request)
        except actions.ConsentActionError as error:
            failure = error.message
        else:
            messages.success(request, _confirmed_message(decided))
            return redirect("consent-subject", pk=decided.subject_id)
    return _decision_page(request, erasure_request, "confirm", None, failure)


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(ErasureRequest)
def erasure_request_decline(request: TenantRequest, pk: int) -> HttpResponse:
    """A tenant admin declines a "purpose satisfied" request, saying why (a revocation cannot be declined)."""
    erasure_request = _erasure_request(request, pk)
    form = DeclineForm(request.POST or None)
    failure = ""
    if request.method == "POST" and form.is_valid():
        try:
            actions.decline_erasure_request(
                actor=request.user, request=erasure_request, reason=form.cleaned_data["reason"]
            )
        except actions.ConsentActionError as error:
            failure = error.message
        else:
            messages.success(request, "Declined: the purpose stays open and the requester can read why.")
            return redirect("consent-subject", pk=erasure_request.subject_id)
    return _decision_page(request, erasure_request, "decline", form, failure)
