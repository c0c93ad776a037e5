"""Consent links as staff see them: send, the delivery status, re-send, start an in-person signing."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from consent import actions
from consent.forms import SendLinkForm
from consent.mail import site_url
from consent.models import ConsentLink, ConsentTemplate, LinkDelivery, Subject
from consent.status import LINK_STATUS_PREFETCH, link_status
from consent.views.common import can, get_subject
from tenancy.access import get_for_tenant_or_404, tenant_object_view
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm, tenant_member_required


def _delivery_message(request: TenantRequest, delivery: LinkDelivery) -> None:
    if delivery.ok:
        messages.success(request, f"E-mailed to {delivery.sent_to}. Only the subject receives the link.")
    else:
        messages.error(
            request,
            f"The e-mail to {delivery.sent_to} could not be sent ({delivery.error}). The link is kept, "
            "unsigned: re-send it when mail works again.",
        )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Subject)
def subject_send_link(request: TenantRequest, pk: int) -> HttpResponse:
    subject = get_subject(request, pk)
    check_perm(request, "consent.add_consentlink")
    form = SendLinkForm(request.POST or None, tenant=require_tenant(request))
    if request.method == "POST" and form.is_valid():
        try:
            link = actions.send_consent_link(
                actor=request.user,
                subject=subject,
                template=form.cleaned_data["template"],
                purposes=form.cleaned_data["purposes"],
                intended_uses=form.cleaned_data["intended_uses"],
                identity_verification=form.cleaned_data["identity_verification"],
                site_url=site_url(request),
                channels=form.list_value("channels"),
                territories=form.list_value("territories"),
                valid_from=form.cleaned_data["valid_from"],
                expires_at=form.cleaned_data["expires_at"],
                sign_within_hours=form.cleaned_data["sign_within_hours"],
            )
        except actions.ConsentActionError as error:
            form.add_error(None, error.message)
        else:
            _delivery_message(request, link.deliveries.get())
            return redirect("consent-link", pk=link.pk)
    return render(
        request,
        "consent/send_link.html",
        {
            "subject": subject,
            "form": form,
            # With no published text the form cannot be sent: say who publishes one instead.
            "has_texts": ConsentTemplate.objects.for_tenant(require_tenant(request)).exists(),
            "can_publish_text": can(request, "consent.add_consenttemplate"),
            "default_sign_hours": settings.LIKENESS_CONSENT_LINK_HOURS,
        },
        status=400 if request.method == "POST" else 200,
    )


def _link(request: TenantRequest, pk: int) -> ConsentLink:
    link = get_for_tenant_or_404(
        ConsentLink.objects.select_related("subject", "template").prefetch_related(*LINK_STATUS_PREFETCH),
        require_tenant(request),
        pk=pk,
    )
    check_perm(request, "consent.view_consentlink", link)
    check_perm(request, "consent.view_subject", link.subject)
    return link


@require_GET
@tenant_member_required
@tenant_object_view(ConsentLink)
def link_detail(request: TenantRequest, pk: int) -> HttpResponse:
    """The link as staff see it: to whom and when it was e-mailed, in-person signings, signed or not."""
    link = _link(request, pk)
    can_deliver = can(request, "consent.add_consentlink")
    status = link_status(link)
    return render(
        request,
        "consent/link_detail.html",
        {
            "link": link,
            "subject": link.subject,
            "status": status,
            "deliveries": sorted(link.deliveries.all(), key=lambda d: (d.attempted_at, d.pk)),
            "handovers": link.handovers.order_by("started_at"),
            "can_deliver": can_deliver and status.open,
        },
    )


def _link_confirm(
    request: TenantRequest,
    link: ConsentLink,
    *,
    title: str,
    explanation: str,
    button: str,
    failure: actions.ConsentActionError | None,
) -> HttpResponse:
    status = 200 if failure is None else 429 if isinstance(failure, actions.DeliveryLimitError) else 400
    return render(
        request,
        "components/confirm.html",
        {
            "subject": link.subject,
            "title": title,
            "explanation": explanation,
            "button": button,
            "failure": failure.message if failure is not None else "",
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(ConsentLink)
def link_resend(request: TenantRequest, pk: int) -> HttpResponse:
    link = _link(request, pk)
    check_perm(request, "consent.add_consentlink")
    failure: actions.ConsentActionError | None = None
    if request.method == "POST":
        try:
            delivery = actions.resend_consent_link(actor=request.user, link=link, site_url=site_url(request))
        except actions.ConsentActionError as error:
            failure = error
        else:
            _delivery_message(request, delivery)
            return redirect("consent-link", pk=link.pk)
    return _link_confirm(
        request,
        link,
        title="E-mail the consent link again",
        explanation=(
            f"The same link goes again to {link.sent_to}, the address it was created for (a new address "
            f"needs a new link). At most {actions.MAX_LINK_DELIVERIES} e-mails per link, one a minute."
        ),
        button="Re-send",
        failure=failure,
    )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(ConsentLink)
def link_in_person(request: TenantRequest, pk: int) -> HttpResponse:
    """Start an in-person signing: the code goes to the subject, staff get the page to hand over."""
    link = _link(request, pk)
    check_perm(request, "consent.add_consentlink")
    failure: actions.ConsentActionError | None = None
    if request.method == "POST":
        try:
            started = actions.start_in_person_signing(actor=request.user, link=link)
        except actions.ConsentActionError as error:
            failure = error
        else:
            return render(
                request,
                "consent/handover_started.html",
                {
                    "link": link,
                    "subject": link.subject,
                    "handover": started.handover,
                    "delivery": started.delivery,
                    "url": request.build_absolute_uri(
                        reverse("consent-handover", kwargs={"token": started.token})
                    ),
                },
            )
    minutes = int(actions.CODE_VALID_FOR.total_seconds() // 60)
    return _link_confirm(
        request,
        link,
        title="Sign in person",
        explanation=(
            f"A one-time code goes to {link.sent_to}, valid {minutes} minutes. You get a page to open on the "
            "device the subject will use, signed out of Likeness (a private window works). The subject "
            "enters the code there, then reads and signs. Starting again closes any earlier in-person "
            "signing of this link."
        ),
        button="Send the code",
        failure=failure,
    )
