"""The subject's own pages (no account): the e-mailed link's page, which becomes their portal once signed,
and the in-person handover.

The portal (`/consent/<token>/` after signing) shows the consent and its scope,
every image of the subject that staff approved or that waits for review (served
by `/consent/<token>/images/<id>/`, which checks the token, the subject and the
image's state), a veto on each, and the withdrawal (`/consent/<token>/withdraw/`:
a confirmation, then the receipt on the portal). Every route carrying the token
stays under /consent/ (the log filter redacts it there), is never cached and
refuses a logged-in user, audited. Once the consent is withdrawn or its period
has ended, no image is shown: a withdrawn one shows the receipt and the public
part of the deletion certificate, an ended one the withdrawal only.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from consent import actions
from consent.actions.gate import in_period
from consent.forms import CodeForm, SignForm
from consent.models import (
    AssetKind,
    ConsentLink,
    ConsentRecord,
    DeletionCertificate,
    ErasureRequest,
    Purpose,
    Representation,
)
from consent.views.files import inline_asset
from editing import review
from tenancy.throttling import client_address

# Images on one page of the portal: a phone scrolls through them, a link pages on.
PORTAL_PAGE_SIZE = 24
SIGNED_LINK_EXEMPTION = "the subject's signed link: the token, not a session, is the capability"


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
    """Where the subject reads and signs (each purpose ticked on its own); once signed, their portal.

    A logged-in user of the product is refused here with 403, whatever the role
    and tenant, and the refusal is audited in the link's tenant. A withdrawal
    posted here (a page from before the confirmation step) goes to the confirmation.
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
    if step == "revoke":
        return redirect("consent-withdraw", token=token)
    failure = ""
    form = SignForm(request.POST or None)
    if request.method == "POST":
        try:
            if form.is_valid():
                actions.sign_consent(token=token, **_signature(form), **_signer(request))
                messages.success(request, SIGNED_MESSAGE)
                return redirect("consent-sign", token=token)
            failure = SIGN_FORM_INCOMPLETE
        except actions.ConsentActionError as error:
            failure = error.message
    record = _record(link)
    if record is None:
        return _public(
            request,
            "consent/sign.html",
            {
                **_terms(link),
                "link_open": link.sign_by >= timezone.now(),
                "failure": failure,
                "form": form,
            },
            status=400 if failure else 200,
        )
    return _public(request, "consent/portal.html", {**_portal(request, link, record), "link_token": token})


def _record(link: ConsentLink) -> ConsentRecord | None:
    return (
        ConsentRecord.objects.for_tenant(link.tenant)
        .select_related("revocation", "template", "retention_schedule")
        .filter(link=link)
        .first()
    )


def _revocation_receipt(record: ConsentRecord) -> dict[str, Any]:
    """What the subject is told after withdrawing: when, what happens to their data, and the certificate's
    public part once the erasure it started is complete (what was destroyed and when, no internal ids)."""
    revocation = record.revocation
    certificate = (
        DeletionCertificate.objects.for_tenant(record.tenant)
        .filter(subject_id=record.subject_id, scope=DeletionCertificate.Scope.SUBJECT)
        .filter(started_at__gte=revocation.revoked_at)
        .order_by("started_at", "pk")
        .first()
    )
    destroyed = []
    if certificate is not None:
        destroyed = [
            (AssetKind(kind).label if kind in AssetKind.values else kind, count)
            for kind, count in sorted(certificate.destroyed_counts.items())
            if count
        ]
    # Staff recorded the withdrawal: the erasure waits for an admin, unless the subject asks for it now.
    waiting = (
        ErasureRequest.objects.for_tenant(record.tenant)
        .filter(revocation=revocation, state=ErasureRequest.State.PENDING)
        .first()
    )
    return {
        "revocation": revocation,
        "certificate": certificate,
        "destroyed": destroyed,
        "erasure_request": waiting,
        "still_in_force": certificate is None and bool(actions.records_in_force(record.subject)),
    }


def _portal(request: HttpRequest, link: ConsentLink, record: ConsentRecord) -> dict[str, Any]:
    """The portal's context: the consent as signed, and its images while it is in force (paginated)."""
    revoked = getattr(record, "revocation", None) is not None
    in_force = not revoked and in_period(record, timezone.now())
    page_obj = None
    if in_force:
        page_obj = Paginator(review.portal_outputs(link), PORTAL_PAGE_SIZE).get_page(request.GET.get("page"))
    return {
        "link": link,
        "tenant": link.tenant,
        "record": record,
        "signed_purposes": [Purpose(value).label for value in record.purposes],
        "schedule": record.retention_schedule,
        "in_force": in_force,
        "ended": not revoked and not in_force and record.valid_from <= timezone.now(),
        "page_obj": page_obj,
        "max_reason": review.MAX_REASON_CHARS,
        **(_revocation_receipt(record) if revoked else {}),
    }


def _open_portal(request: HttpRequest, token: str, step: str) -> tuple[ConsentLink, ConsentRecord]:
    """The link and its consent, for the portal's image routes: only while the consent is in force.

    Raises Http404 for a bad token, an unsigned link, a withdrawn or ended consent; SignedInUserError
    (audited) for a logged-in user.
    """
    try:
        link = actions.resolve_link(token)
    except actions.InvalidLinkError:
        raise Http404("This consent link is not valid.") from None
    actions.require_anonymous_signer(request.user, link, step)
    record = _record(link)
    if record is None or getattr(record, "revocation", None) is not None:
        raise Http404("No consent in force.")
    if not in_period(record, timezone.now()):
        raise Http404("No consent in force.")
    return link, record


@require_GET
@never_cache
def portal_image(request: HttpRequest, token: str, output_id: int) -> HttpResponse:
    """One image of the link's own subject that may still be used (pending or approved), decrypted.

    Any other output id (another subject's, a vetoed, rejected or withdrawn one) is a 404 like an unknown id.
    """
    try:
        link, _ = _open_portal(request, token, "view")
    except actions.SignedInUserError as error:
        return _refused(request, error)
    output = review.portal_outputs(link).select_related("image").filter(pk=output_id).first()
    if output is None or output.image is None:
        raise Http404("No such image.")
    response = inline_asset(request, output.image, f"image-{output.pk}.png")
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


portal_image.tenant_isolation_exempt = (  # type: ignore[attr-defined]
    "the subject's portal: the signed link's token names the subject; only that subject's images are found"
)


@require_POST
@never_cache
def portal_veto(request: HttpRequest, token: str, output_id: int) -> HttpResponse:
    """The subject withdraws one image of themselves (reason optional): vetoed at once, for good."""
    try:
        link, _ = _open_portal(request, token, "veto")
    except actions.SignedInUserError as error:
        return _refused(request, error)
    try:
        review.veto_output(link=link, output_id=output_id, reason=request.POST.get("reason", ""))
    except review.ReviewError as error:
        if error.code == "not_found":
            raise Http404("No such image.") from None
        messages.error(request, error.message)
    else:
        messages.success(
            request,
            f"The image is withdrawn: {link.tenant.name} can no longer use it, and nobody can undo this.",
        )
    return redirect("consent-sign", token=token)


portal_veto.tenant_isolation_exempt = portal_image.tenant_isolation_exempt  # type: ignore[attr-defined]


@require_http_methods(["GET", "POST"])
@never_cache
def withdraw_page(request: HttpRequest, token: str) -> HttpResponse:
    """The withdrawal of the whole consent: GET says what it means, POST withdraws; then the receipt."""
    try:
        link = actions.resolve_link(token)
    except actions.InvalidLinkError as error:
        return _public(request, "consent/sign_invalid.html", {"message": error.message}, status=404)
    try:
        actions.require_anonymous_signer(request.user, link, "revoke" if request.method == "POST" else "view")
    except actions.SignedInUserError as error:
        return _refused(request, error)
    record = _record(link)
    if record is None:
        message = "Nothing was signed with this link, so there is nothing to withdraw."
        return _public(request, "consent/sign_invalid.html", {"message": message}, status=404)
    if getattr(record, "revocation", None) is not None:
        # Withdrawn already (by staff, on the subject's word): their own request starts a waiting erasure now.
        if request.method == "POST" and _revocation_receipt(record)["erasure_request"] is not None:
            actions.revoke_via_link(token=token, **_signer(request))
        return redirect("consent-sign", token=token)
    if request.method == "POST":
        actions.revoke_via_link(token=token, **_signer(request))
        return redirect("consent-sign", token=token)
    return _public(
        request,
        "consent/withdraw.html",
        {
            "link": link,
            "tenant": link.tenant,
            "record": record,
            "signed_purposes": [Purpose(value).label for value in record.purposes],
            "link_token": token,
        },
    )


withdraw_page.tenant_isolation_exempt = SIGNED_LINK_EXEMPTION  # type: ignore[attr-defined]

sign_page.tenant_isolation_exempt = SIGNED_LINK_EXEMPTION  # type: ignore[attr-defined]

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
