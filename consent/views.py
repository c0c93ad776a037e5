"""Dashboard pages of the consent app and the subject's signing page (thin: writes go through actions).

Object pages look their object up inside the active tenant first (another
tenant's id is a plain 404) and check the permission after. Every object route
answers GET (a page or a confirmation form) and performs its action on POST.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from consent import actions, exports, vault
from consent.actions.erasure_requests import format_moment
from consent.forms import (
    CodeForm,
    ConsentTemplateForm,
    ContactForm,
    DeclineForm,
    EraseForm,
    RetentionScheduleForm,
    RevocationForm,
    SendLinkForm,
    SignForm,
    SubjectForm,
)
from consent.intake import PhotoRejectedError
from consent.mail import site_url
from consent.models import (
    Asset,
    AssetKind,
    ConsentLink,
    ConsentRecord,
    ConsentTemplate,
    DeletionCertificate,
    ErasureRequest,
    LinkDelivery,
    Purpose,
    Representation,
    RetentionSchedule,
    Subject,
)
from consent.status import LINK_STATUS_PREFETCH, STATUS_PREFETCH, link_status, subject_status
from tenancy.access import get_for_tenant_or_404, tenant_object_view
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm, tenant_member_required, tenant_permission_required
from tenancy.permissions import has_perm, restrict_to_perm
from tenancy.throttling import client_address

PHOTO_KINDS = (AssetKind.ENROLLMENT_PHOTO, AssetKind.REFERENCE_PHOTO)
CLOSED_REQUESTS_SHOWN = 50
ActionFailure = (actions.ConsentActionError, actions.ConsentRequiredError, PhotoRejectedError)


def _failure_text(error: Exception) -> str:
    return str(getattr(error, "message", error))


def _subject(request: TenantRequest, pk: int, perm: str = "consent.view_subject") -> Subject:
    subject = get_for_tenant_or_404(
        Subject.objects.select_related("retention_schedule", "enrollment_photo").prefetch_related(
            *STATUS_PREFETCH
        ),
        require_tenant(request),
        pk=pk,
    )
    check_perm(request, perm, subject)
    return subject


def _can(request: TenantRequest, perm: str, obj: Any = None) -> bool:
    return has_perm(request.user, require_tenant(request), perm, obj)


# --- subjects ---------------------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@tenant_member_required
def subject_list(request: TenantRequest) -> HttpResponse:
    tenant = require_tenant(request)
    form = SubjectForm(request.POST or None)
    if request.method == "POST":
        check_perm(request, "consent.add_subject")
        if form.is_valid():
            try:
                subject = actions.create_subject(actor=request.user, tenant=tenant, **form.cleaned_data)
            except actions.ConsentActionError as error:
                form.add_error(None, error.message)
            else:
                messages.success(request, f"Subject {subject.display_name} added.")
                return redirect("consent-subject", pk=subject.pk)
    subjects = restrict_to_perm(
        Subject.objects.for_tenant(tenant).prefetch_related(*STATUS_PREFETCH).order_by("display_name", "id"),
        request.user,
        tenant,
        "consent.view_subject",
    )
    return render(
        request,
        "consent/subject_list.html",
        {
            "rows": [(subject, subject_status(subject)) for subject in subjects],
            "form": form,
            "can_add": _can(request, "consent.add_subject"),
        },
        status=400 if request.method == "POST" else 200,
    )


@require_GET
@tenant_member_required
@tenant_object_view(Subject)
def subject_detail(request: TenantRequest, pk: int) -> HttpResponse:
    subject = _subject(request, pk)
    assets = subject.assets.exclude(kind=AssetKind.FACE_EMBEDDING).order_by("kind", "id")
    links = subject.links.select_related("template").prefetch_related(*LINK_STATUS_PREFETCH)
    return render(
        request,
        "consent/subject_detail.html",
        {
            "subject": subject,
            "status": subject_status(subject),
            "records": subject.records.select_related("revocation").order_by("-signed_at"),
            "links": [(link, link_status(link)) for link in links.order_by("-created_at")],
            "assets": assets if _can(request, "consent.view_asset") else [],
            "can_photos": _can(request, "consent.view_asset"),
            "certificates": subject.deletion_certificates.all()
            if _can(request, "consent.view_deletioncertificate")
            else [],
            "erasure_requests": subject.erasure_requests.select_related("requested_by").order_by(
                "-requested_at", "-id"
            )
            if _can(request, "consent.view_erasurerequest")
            else [],
            "can_confirm": _can(request, "consent.confirm_erasurerequest"),
            "can_send_link": _can(request, "consent.add_consentlink"),
            "can_change_contact": _can(request, "consent.change_subject", subject),
            "can_upload": _can(request, "consent.upload_photos_subject", subject),
            "can_revoke": _can(request, "consent.add_consentrevocation"),
            "can_erase": _can(request, "consent.erase_subject", subject),
            "can_close_purpose": _can(request, "consent.close_purpose_subject", subject),
            "can_history": _can(request, "consent.view_consentrecord"),
        },
    )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Subject)
def subject_contact(request: TenantRequest, pk: int) -> HttpResponse:
    """Change the address consent links and in-person codes go to (audited; links sent keep theirs)."""
    subject = _subject(request, pk, "consent.change_subject")
    form = ContactForm(request.POST or None, initial={"contact_email": subject.contact_email})
    if request.method == "POST" and form.is_valid():
        try:
            actions.change_contact_email(
                actor=request.user, subject=subject, contact_email=form.cleaned_data["contact_email"]
            )
        except actions.ConsentActionError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, "Contact address saved.")
            return redirect("consent-subject", pk=subject.pk)
    return render(
        request,
        "consent/contact.html",
        {"subject": subject, "form": form},
        status=400 if request.method == "POST" else 200,
    )


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
    subject = _subject(request, pk)
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
        {"subject": subject, "form": form},
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
    can_deliver = _can(request, "consent.add_consentlink")
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
        "consent/confirm.html",
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


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Subject)
def subject_photos(request: TenantRequest, pk: int) -> HttpResponse:
    subject = _subject(request, pk)
    check_perm(request, "consent.view_asset")
    report: actions.IntakeReport | None = None
    failure = ""
    status = 200
    if request.method == "POST":
        check_perm(request, "consent.upload_photos_subject", subject)
        try:
            enrollment = request.FILES.getlist("enrollment")
            if enrollment:
                actions.set_enrollment_photo(actor=request.user, subject=subject, upload=enrollment[0])
                messages.success(request, "Enrollment photo stored.")
                return redirect("consent-subject-photos", pk=subject.pk)
            report = actions.upload_reference_photos(
                actor=request.user, subject=subject, uploads=request.FILES.getlist("photos")
            )
        except ActionFailure as error:
            failure, status = _failure_text(error), 400
        except vault.AssetIntegrityError as error:  # the enrollment embedding every photo is compared with
            failure, status = error.message, 500
        subject = _subject(request, pk)
    photos = subject.assets.filter(kind__in=PHOTO_KINDS).order_by("kind", "id")
    return render(
        request,
        "consent/photos.html",
        {
            "subject": subject,
            "photos": photos,
            "report": report,
            "failure": failure,
            "can_upload": _can(request, "consent.upload_photos_subject", subject),
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Subject)
def subject_purpose_satisfied(request: TenantRequest, pk: int) -> HttpResponse:
    subject = _subject(request, pk, "consent.close_purpose_subject")
    failure = ""
    if request.method == "POST":
        try:
            pending = actions.mark_purpose_satisfied(actor=request.user, subject=subject)
        except actions.ConsentActionError as error:
            failure = error.message
        else:
            if pending is None:
                messages.success(
                    request, "Purpose marked satisfied: the retention schedule's clock has started."
                )
            else:
                messages.info(
                    request,
                    "Recorded: marking the purpose satisfied awaits a tenant admin's confirmation (due by "
                    f"{format_moment(pending.deadline)}). No retention clock starts until then.",
                )
            return redirect("consent-subject", pk=subject.pk)
    schedule = subject.retention_schedule
    explanation = (
        f"Under schedule v{schedule.version} ({schedule.title}) the subject's biometric data is then "
        f"destroyed within {schedule.days_after_purpose_satisfied} days."
    )
    if not _can(request, "consent.erase_subject", subject):
        explanation += " A tenant admin confirms it first (two-person rule); the clock starts then."
    return render(
        request,
        "consent/confirm.html",
        {
            "subject": subject,
            "title": "Mark the purpose satisfied",
            "explanation": explanation,
            "button": "Mark satisfied",
            "failure": failure,
        },
        status=400 if failure else 200,
    )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Subject)
def subject_erase(request: TenantRequest, pk: int) -> HttpResponse:
    subject = _subject(request, pk, "consent.erase_subject")
    form = EraseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            certificate = actions.erase_subject(
                actor=request.user, subject=subject, reason=form.cleaned_data["reason"]
            )
        except actions.ConsentActionError as error:
            form.add_error(None, error.message)
        else:
            if certificate is None:
                messages.info(request, "Nothing of this subject is stored; there was nothing to erase.")
            else:
                messages.success(request, "The subject's key is destroyed; the files are being deleted.")
            return redirect("consent-subject", pk=subject.pk)
    return render(
        request,
        "consent/confirm.html",
        {
            "subject": subject,
            "title": "Erase everything stored about this subject",
            "explanation": "The data key is destroyed first, then every file. Consent records stay.",
            "form": form,
            "button": "Erase",
            "danger": True,
        },
        status=400 if request.method == "POST" else 200,
    )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(ConsentRecord)
def record_revoke(request: TenantRequest, pk: int) -> HttpResponse:
    record = get_for_tenant_or_404(
        ConsentRecord.objects.select_related("subject", "revocation"), require_tenant(request), pk=pk
    )
    check_perm(request, "consent.add_consentrevocation")
    form = RevocationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            revocation = actions.record_revocation(actor=request.user, record=record, **form.cleaned_data)
        except actions.ConsentActionError as error:
            form.add_error(None, error.message)
        else:
            pending = getattr(revocation, "erasure_request", None)
            if pending is not None and pending.is_pending:
                messages.warning(
                    request,
                    "Revocation recorded: every use of the subject's likeness stopped at once. Erasing their "
                    "data awaits a tenant admin's confirmation; unconfirmed, it runs at "
                    f"{format_moment(pending.deadline)} all the same.",
                )
            else:
                messages.success(request, "Revocation recorded.")
            return redirect("consent-subject", pk=record.subject_id)
    return render(
        request,
        "consent/record_revoke.html",
        {"record": record, "subject": record.subject, "form": form},
        status=400 if request.method == "POST" else 200,
    )


# --- erasure requests (the two-person rule) -----------------------------------------------------------
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
            "can_confirm": _can(request, "consent.confirm_erasurerequest"),
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


# --- files ------------------------------------------------------------------------------------------
@require_GET
@never_cache
@tenant_member_required
@tenant_object_view(Asset)
def asset_file(request: TenantRequest, pk: int) -> HttpResponse:
    """Decrypt on the fly for a member allowed to see it; face embeddings are never served."""
    asset = get_for_tenant_or_404(
        Asset.objects.exclude(kind=AssetKind.FACE_EMBEDDING), require_tenant(request), pk=pk
    )
    check_perm(request, "consent.view_asset", asset)
    try:
        data = vault.read_asset(asset)
    except vault.KeyDestroyedError:
        raise Http404("Not found.") from None
    except vault.AssetIntegrityError as error:
        # A server-side fault, not the request's: a 500, but answered here with its reason, not a traceback.
        return render(request, "consent/asset_damaged.html", {"message": error.message}, status=500)
    response = HttpResponse(data, content_type=asset.content_type)
    extension = asset.storage_name.rsplit(".", 2)[-2] if asset.storage_name.count(".") >= 2 else "bin"
    response["Content-Disposition"] = f'inline; filename="asset-{asset.pk}.{extension}"'
    response["Cache-Control"] = "private, no-store"
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    return response


# --- legal review -----------------------------------------------------------------------------------
@require_GET
@tenant_member_required
@tenant_object_view(Subject)
def subject_history(request: TenantRequest, pk: int) -> HttpResponse:
    """Printable consent history of one subject: records, revocations, links, schedule, certificates."""
    subject = _subject(request, pk)
    check_perm(request, "consent.view_consentrecord")
    return render(
        request,
        "consent/history.html",
        {
            "subject": subject,
            "status": subject_status(subject),
            "records": subject.records.select_related("revocation", "template").order_by("signed_at"),
            "links": subject.links.select_related("template")
            .prefetch_related(*LINK_STATUS_PREFETCH)
            .order_by("created_at"),
            "certificates": subject.deletion_certificates.order_by("started_at"),
            "erasure_requests": subject.erasure_requests.select_related(
                "requested_by", "decided_by"
            ).order_by("requested_at", "id"),
            "can_export": _can(request, "consent.export_subject", subject),
        },
    )


def _history_export(request: TenantRequest, pk: int, file_format: str) -> HttpResponse:
    subject = _subject(request, pk, "consent.export_subject")
    actions.record_export(
        actor=request.user,
        tenant=require_tenant(request),
        what="subject_history",
        file_format=file_format,
        target=subject,
    )
    document = exports.history_document(subject)
    name = f"consent-history-subject-{subject.pk}.{file_format}"
    if file_format == "json":
        return exports.json_attachment(document, name)
    return exports.csv_attachment(document["consent_records"], exports.RECORD_COLUMNS, name)


@require_GET
@tenant_member_required
@tenant_object_view(Subject)
def subject_history_json(request: TenantRequest, pk: int) -> HttpResponse:
    return _history_export(request, pk, "json")


@require_GET
@tenant_member_required
@tenant_object_view(Subject)
def subject_history_csv(request: TenantRequest, pk: int) -> HttpResponse:
    return _history_export(request, pk, "csv")


@require_GET
@tenant_permission_required("consent.view_deletioncertificate")
def certificate_list(request: TenantRequest) -> HttpResponse:
    certificates = DeletionCertificate.objects.for_tenant(require_tenant(request)).select_related("subject")
    return render(
        request,
        "consent/certificate_list.html",
        {
            "certificates": certificates.order_by("-started_at"),
            "can_export": _can(request, "consent.export_deletioncertificate"),
        },
    )


def _certificates_export(request: TenantRequest, file_format: str) -> HttpResponse:
    tenant = require_tenant(request)
    actions.record_export(
        actor=request.user, tenant=tenant, what="deletion_certificates", file_format=file_format
    )
    certificates = DeletionCertificate.objects.for_tenant(tenant).order_by("started_at")
    return exports.certificates_attachment(certificates, tenant.slug, file_format)


@require_GET
@tenant_permission_required("consent.export_deletioncertificate")
def certificates_json(request: TenantRequest) -> HttpResponse:
    return _certificates_export(request, "json")


@require_GET
@tenant_permission_required("consent.export_deletioncertificate")
def certificates_csv(request: TenantRequest) -> HttpResponse:
    return _certificates_export(request, "csv")


def _certificate(request: TenantRequest, pk: int, perm: str) -> DeletionCertificate:
    certificate = get_for_tenant_or_404(
        DeletionCertificate.objects.select_related("subject"), require_tenant(request), pk=pk
    )
    check_perm(request, perm, certificate)
    return certificate


@require_GET
@tenant_member_required
@tenant_object_view(DeletionCertificate)
def certificate_detail(request: TenantRequest, pk: int) -> HttpResponse:
    """The printable certificate."""
    certificate = _certificate(request, pk, "consent.view_deletioncertificate")
    return render(
        request,
        "consent/certificate.html",
        {
            "certificate": certificate,
            "facts": exports.certificate_facts(certificate),
            "can_export": _can(request, "consent.export_deletioncertificate"),
        },
    )


@require_GET
@tenant_member_required
@tenant_object_view(DeletionCertificate)
def certificate_json(request: TenantRequest, pk: int) -> HttpResponse:
    certificate = _certificate(request, pk, "consent.export_deletioncertificate")
    actions.record_export(
        actor=request.user,
        tenant=require_tenant(request),
        what="deletion_certificate",
        file_format="json",
        target=certificate,
    )
    return exports.json_attachment(
        exports.certificate_facts(certificate), f"deletion-certificate-{certificate.public_id}.json"
    )


# --- templates and retention schedules ------------------------------------------------------------------
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
        {**context, "form": form, "can_add": _can(request, add_perm)},
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


# --- the subject's pages -----------------------------------------------------------------------------
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
