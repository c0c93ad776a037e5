"""Versioned documents: consent texts and retention schedules, and the form that publishes the next."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from consent import actions
from consent.forms import ConsentTemplateForm, RetentionScheduleForm
from consent.models import ConsentTemplate, RetentionSchedule
from consent.views.common import can
from tenancy.access import get_for_tenant_or_404, tenant_object_view
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm, tenant_member_required, tenant_permission_required


def _published_list(
    request: TenantRequest,
    *,
    form: forms.Form,
    add_perm: str,
    publish: Callable[..., ConsentTemplate | RetentionSchedule],
    detail_url: str,
    template: str,
    context: dict[str, Any],
) -> HttpResponse:
    """A list of versioned documents with the form that publishes the next version."""
    if request.method == "POST":
        check_perm(request, add_perm)
        if form.is_valid():
            try:
                published = publish(actor=request.user, tenant=require_tenant(request), **form.cleaned_data)
            except actions.ConsentActionError as error:
                form.add_error(None, error.message)
            else:
                messages.success(request, f"Published {published}.")
                return redirect(detail_url, pk=published.pk)
    return render(
        request,
        template,
        {**context, "form": form, "can_add": can(request, add_perm)},
        status=400 if request.method == "POST" else 200,
    )


@require_http_methods(["GET", "POST"])
@tenant_permission_required("consent.view_consenttemplate")
def template_list(request: TenantRequest) -> HttpResponse:
    return _published_list(
        request,
        form=ConsentTemplateForm(request.POST or None),
        add_perm="consent.add_consenttemplate",
        publish=actions.publish_consent_template,
        detail_url="consent-template",
        template="consent/template_list.html",
        context={
            "templates": ConsentTemplate.objects.for_tenant(require_tenant(request)).order_by(
                "name", "-version"
            )
        },
    )


@require_GET
@tenant_member_required
@tenant_object_view(ConsentTemplate)
def template_detail(request: TenantRequest, pk: int) -> HttpResponse:
    template = get_for_tenant_or_404(ConsentTemplate, require_tenant(request), pk=pk)
    check_perm(request, "consent.view_consenttemplate", template)
    return render(request, "consent/template_detail.html", {"template": template})


@require_http_methods(["GET", "POST"])
@tenant_permission_required("consent.view_retentionschedule")
def schedule_list(request: TenantRequest) -> HttpResponse:
    tenant = require_tenant(request)
    return _published_list(
        request,
        form=RetentionScheduleForm(request.POST or None),
        add_perm="consent.add_retentionschedule",
        publish=actions.publish_retention_schedule,
        detail_url="consent-schedule",
        template="consent/schedule_list.html",
        context={
            "schedules": RetentionSchedule.objects.for_tenant(tenant).order_by("-version"),
            "in_force": actions.schedule_in_force(tenant),
        },
    )


@require_GET
@tenant_member_required
@tenant_object_view(RetentionSchedule)
def schedule_detail(request: TenantRequest, pk: int) -> HttpResponse:
    schedule = get_for_tenant_or_404(RetentionSchedule, require_tenant(request), pk=pk)
    check_perm(request, "consent.view_retentionschedule", schedule)
    return render(request, "consent/schedule_detail.html", {"schedule": schedule})
