"""The subject's own pages (no account): the e-mailed link's page and the in-person handover."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from consent import actions
from consent.forms import CodeForm, SignForm
from consent.models import ConsentLink, ConsentRecord, Purpose, Representation
from tenancy.throttling import client_address


def _refused(request: HttpRequest, error: actions.SignedInUserError) -> HttpResponse:
    return _public(request, "consent/sign_refused.html", {"message": error.message}, status=403)


def _terms(link: ConsentLink) -> dict[str, Any]:
    """What the subject reads before signing, the same on the link page and the in-person page."""
    return {
        "link": link,
        "tenant": link.tenant,
        "template": link.template,
        "schedule": link.subject.retention_schedule,
        "offered": [Purpose(value) for value in link.purposes_offered],
        "representations": Representation.choices,
    }


def _signer(request: HttpRequest) -> dict[str, Any]:
    return {
        # Behind the proxies LIKENESS_TRUSTED_PROXIES counts, the address they saw, not theirs.
        "ip": client_address(request),
        "user_agent": request.META.get("HTTP_USER_AGENT", ""),
        "session_user": request.user,
    }


def _signature(form: SignForm) -> dict[str, Any]:
    return {
        "purposes": form.cleaned_data["purposes"],
        "full_name": form.cleaned_data["full_name"],
        "representation": form.cleaned_data["representation"],
        "representation_detail": form.cleaned_data["representation_detail"],
    }


SIGN_FORM_INCOMPLETE = "Type your full name and say whether you were represented."
SIGNED_MESSAGE = "Thank you: your consent is recorded. You can withdraw it on this page at any time."


@require_http_methods(["GET", "POST"])
@never_cache
def sign_page(request: HttpRequest, token: str) -> HttpResponse:
    """Where the subject reads, signs (each purpose ticked on its own) and later revokes; no account.

    A logged-in user of the product is refused here with 403, whatever the role
    and tenant, and the refusal is audited in the link's tenant.
    """
    try:
        link = actions.resolve_link(token)
    except actions.InvalidLinkError as error:
        return _public(request, "consent/sign_invalid.html", {"message": error.message}, status=404)
    step = "view"
    if request.method == "POST":
        step = "revoke" if request.POST.get("action") == "revoke" else "sign"
    try:
        actions.require_anonymous_signer(request.user, link, step)
    except actions.SignedInUserError as error:
        return _refused(request, error)
    failure = ""
    form = SignForm(request.POST or None)
    if request.method == "POST":
        try:
            if step == "revoke":
                actions.revoke_via_link(token=token, **_signer(request))
                messages.success(
                    request,
                    "Your consent is withdrawn. Your photos and all made from them are being destroyed.",
                )
                return redirect("consent-sign", token=token)
            if form.is_valid():
                actions.sign_consent(token=token, **_signature(form), **_signer(request))
                messages.success(request, SIGNED_MESSAGE)
                return redirect("consent-sign", token=token)
            failure = SIGN_FORM_INCOMPLETE
        except actions.ConsentActionError as error:
            failure = error.message
    record = (
        ConsentRecord.objects.for_tenant(link.tenant).select_related("revocation").filter(link=link).first()
    )
    return _public(
        request,
        "consent/sign.html",
        {
            **_terms(link),
            "record": record,
            "signed_purposes": [Purpose(value).label for value in record.purposes] if record else [],
            "revocation": getattr(record, "revocation", None) if record else None,
            "link_open": record is None and link.sign_by >= timezone.now(),
            "failure": failure,
            "form": form,
        },
        status=400 if failure else 200,
    )


sign_page.tenant_isolation_exempt = "the subject's signed link: the token, not a session, is the capability"  # type: ignore[attr-defined]

HANDOVER_SESSION_KEY = "consent_handover_proofs"


@require_http_methods(["GET", "POST"])
@never_cache
def handover_page(request: HttpRequest, token: str) -> HttpResponse:
    """In-person signing, on the device handed to the subject: the e-mailed code first, then the form.

    Staff hold this page's URL; it shows nothing signable until the code sent
    to the subject's address is entered, and then only to this browser session.
    """
    try:
        handover = actions.resolve_handover(token)
    except actions.InvalidLinkError as error:
        return _public(request, "consent/sign_invalid.html", {"message": error.message}, status=404)
    link = handover.link
    step = "view"
    if request.method == "POST":
        step = "sign" if request.POST.get("action") == "sign" else "code"
    try:
        actions.require_anonymous_signer(request.user, link, step)
    except actions.SignedInUserError as error:
        return _refused(request, error)
    proofs: dict[str, str] = request.session.get(HANDOVER_SESSION_KEY, {})
    proof = proofs.get(handover.public_id.hex, "")
    failure = ""
    code_form = CodeForm(request.POST if step == "code" else None)
    form = SignForm(request.POST if step == "sign" else None)
    if request.method == "POST":
        try:
            if step == "sign":
                if form.is_valid():
                    actions.sign_in_person(token=token, proof=proof, **_signature(form), **_signer(request))
                    messages.success(
                        request,
                        "Thank you: your consent is recorded. To withdraw it later, use the link "
                        f"{link.tenant.name} e-mailed you, or tell them in any other way.",
                    )
                    return redirect("consent-handover", token=token)
                failure = SIGN_FORM_INCOMPLETE
            elif code_form.is_valid():
                proof = actions.verify_in_person_code(
                    token=token, code=code_form.cleaned_data["code"], session_user=request.user
                )
                request.session.cycle_key()  # a session key known before the code was entered is worthless
                request.session[HANDOVER_SESSION_KEY] = {handover.public_id.hex: proof}  # one at a time
                return redirect("consent-handover", token=token)
            else:
                failure = "Enter the code from the e-mail."
        except actions.ConsentActionError as error:
            failure = error.message
        handover = actions.resolve_handover(token)  # re-read: attempts, void
    record = ConsentRecord.objects.for_tenant(link.tenant).filter(link=link).first()
    verified = record is None and handover.voided_at is None and actions.session_is_verified(handover, proof)
    return _public(
        request,
        "consent/handover.html",
        {
            **_terms(link),
            "handover": handover,
            "record": record if record is not None and record.handover_id == handover.pk else None,
            "signed_elsewhere": record is not None and record.handover_id != handover.pk,
            "verified": verified,
            "failure": failure,
            "form": form,
        },
        status=400 if failure else 200,
    )


handover_page.tenant_isolation_exempt = (  # type: ignore[attr-defined]
    "in-person signing: the signed handover token and the e-mailed code, not a session, are the capability"
)


def _public(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    response = render(request, template, context, status=status)
    # The token is in the URL: no Referer may carry it to another site, and no search engine may index it.
    # (same-origin, not no-referrer: with no-referrer browsers send "Origin: null" and the CSRF check fails.)
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response
