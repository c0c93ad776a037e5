"""The approval queue `/approvals/`: pending outputs, decided one by one or in bulk (thin: every decision is
an editing.review call, the same as the API's).

It works without JavaScript: one approve form and one reject form (the reason
and its button, so Enter in the reason rejects) per output, and a bulk form the
outputs' checkboxes belong to. static/likeness/approvals.js adds the keyboard:
j/k move a visible focus, a approves, r goes to the reason, x selects.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from consent.models import Subject
from editing import review
from editing.models import Output, OutputStatus
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import tenant_permission_required
from tenancy.pagination import keyset_page
from tenancy.permissions import has_perm

PAGE_SIZE = 20
MAX_CURSOR_CHARS = 500  # a page's cursor (tenancy.pagination.keyset_page) is under 100
# The subject filter offers those with outputs in the listed status, by name; beyond, the URL's ?subject=.
MAX_SUBJECT_CHOICES = 200
# A bulk decision that fails for many ids names the first few and counts the rest.
MAX_FAILURES_LISTED = 5


class IdListField(forms.Field):
    """The ids of the outputs a decision is about: the row's one hidden id, or the ticked checkboxes."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[int]:
        try:
            return [int(item) for item in value or []]
        except (TypeError, ValueError):
            raise forms.ValidationError("Output ids are whole numbers.") from None


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    ids = IdListField(required=False)
    reason = forms.CharField(required=False)
    # Where the queue was, to come back to it: the filter, the page (its cursor) and the row that had
    # the focus.
    subject = forms.IntegerField(required=False, min_value=1)
    cursor = forms.CharField(required=False, max_length=MAX_CURSOR_CHARS)
    focus = forms.IntegerField(required=False, min_value=0)


def _queue_url(subject: int | None, cursor: str, focus: int | None) -> str:
    query = QueryDict(mutable=True)
    for name, value in (("subject", subject), ("cursor", cursor or None), ("focus", focus)):
        if value is not None:  # focus 0, the first row, is a place to come back to
            query[name] = str(value)
    return f"{reverse('approvals')}{'?' + query.urlencode() if query else ''}"


def _report(request: TenantRequest, decision: str, decisions: list[review.Decision]) -> None:
    done = [d for d in decisions if d.decided]
    failed = [d for d in decisions if not d.decided]
    if done:
        verb = "Approved" if decision == "approve" else "Rejected"
        ids = ", ".join(f"#{d.output_id}" for d in done[:MAX_FAILURES_LISTED])
        more = f" and {len(done) - MAX_FAILURES_LISTED} more" if len(done) > MAX_FAILURES_LISTED else ""
        messages.success(request, f"{verb} {ids}{more}.")
    for failure in failed[:MAX_FAILURES_LISTED]:
        messages.error(request, f"#{failure.output_id} not decided: {failure.error}")
    if len(failed) > MAX_FAILURES_LISTED:
        messages.error(request, f"{len(failed) - MAX_FAILURES_LISTED} more were not decided.")


def _decide(request: TenantRequest) -> HttpResponse:
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(
            request, "That decision could not be read; nothing was decided. Try again from the queue."
        )
        return redirect("approvals")
    data = form.cleaned_data
    decide = review.approve_outputs if data["decision"] == "approve" else review.reject_outputs
    try:
        decisions = decide(
            actor=request.user, tenant=require_tenant(request), output_ids=data["ids"], reason=data["reason"]
        )
    except review.ReviewError as error:
        messages.error(request, error.message)
    else:
        _report(request, data["decision"], decisions)
    return redirect(_queue_url(data["subject"], data["cursor"], data["focus"]))


@require_http_methods(["GET", "POST"])
@tenant_permission_required("editing.review_output")
def approvals(request: TenantRequest) -> HttpResponse:
    """GET: the outputs waiting for review, newest first, one page (or, read-only, those with another
    status: `?status=vetoed` shows what subjects withdrew); POST: a decision, then back here."""
    if request.method == "POST":
        return _decide(request)
    tenant = require_tenant(request)
    status = request.GET.get("status", "")
    status = status if status in OutputStatus.values else OutputStatus.PENDING_REVIEW
    # The queue: the newest output first; a list of decided ones: the latest decision first.
    newest = "-created_at" if status == OutputStatus.PENDING_REVIEW else "-status_changed_at"
    outputs = (
        Output.objects.for_tenant(tenant)
        .filter(status=status)
        .select_related("subject", "identity_model", "decided_by")
        .order_by(newest, "-id")
    )
    subject_id = request.GET.get("subject", "")
    if subject_id.isdigit():
        outputs = outputs.filter(subject_id=int(subject_id))
    page_obj = keyset_page(request, outputs, PAGE_SIZE)
    focus = request.GET.get("focus", "")
    subjects = (
        Subject.objects.for_tenant(tenant)
        .filter(outputs__status=status)
        .distinct()
        .order_by("display_name", "pk")
        .values_list("pk", "display_name")[:MAX_SUBJECT_CHOICES]
    )
    return render(
        request,
        "editing/approvals.html",
        {
            "page_obj": page_obj,
            "status": status,
            "deciding": status == OutputStatus.PENDING_REVIEW,
            "statuses": OutputStatus.choices,
            "subjects": list(subjects),
            "subject_id": int(subject_id) if subject_id.isdigit() else None,
            "focus": min(int(focus), len(page_obj.object_list) - 1) if focus.isdigit() and page_obj else 0,
            "max_reason": review.MAX_REASON_CHARS,
            # Only the approved list offers releases: the queue itself reads no extra permission.
            "can_release": status == OutputStatus.APPROVED
            and has_perm(request.user, require_tenant(request), "editing.add_release"),
        },
    )
