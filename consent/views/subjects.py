"""Subject pages: the list, a subject, its contact address, photos, the purpose mark, erasure, revocation."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_http_methods

from consent import actions, vault
from consent.actions.erasure_requests import format_moment
from consent.forms import ContactForm, EraseForm, RevocationForm, SubjectForm
from consent.models import Asset, AssetKind, ConsentRecord, ConsentRevocation, Subject
from consent.status import (
    LINK_STATUS_PREFETCH,
    STATUS_PREFETCH,
    link_status,
    purposes_in_force,
    subject_status,
)
from consent.views.common import ActionFailure, can, failure_text, get_subject
from personalization import prepare
from tenancy.access import get_for_tenant_or_404, tenant_object_view
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm, tenant_member_required
from tenancy.pagination import keyset_page
from tenancy.permissions import restrict_to_perm
from training.subject_page import subject_studio

SUBJECTS_PER_PAGE = 50


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
    page = keyset_page(request, subjects, SUBJECTS_PER_PAGE)
    return render(
        request,
        "consent/subject_list.html",
        {
            "rows": [(subject, subject_status(subject)) for subject in page],
            "page_obj": page,
            "form": form,
            "can_add": can(request, "consent.add_subject"),
        },
        status=400 if request.method == "POST" else 200,
    )


# Statuses after which nothing of the subject is left to use: no upload, training, studio or erasure.
ERASED_STATUSES = frozenset({"erased", "erasing"})
PHOTOS_SHOWN = 12


@require_GET
@tenant_member_required
@tenant_object_view(Subject)
def subject_detail(request: TenantRequest, pk: int) -> HttpResponse:
    """The hub of a subject: consent per purpose, photos, reference set, training, versions, jobs,
    outputs, and the irreversible actions apart in a danger zone."""
    subject = get_subject(request, pk)
    status = subject_status(subject)
    in_force = purposes_in_force(subject)
    erased = status.code in ERASED_STATUSES
    assets = subject.assets.exclude(kind=AssetKind.FACE_EMBEDDING).order_by("kind", "id")
    links = subject.links.select_related("template").prefetch_related(*LINK_STATUS_PREFETCH)
    can_photos = can(request, "consent.view_asset")
    photos = (
        subject.assets.filter(kind__in=actions.PHOTO_KINDS).order_by("kind", "id") if can_photos else None
    )
    studio = subject_studio(request, subject, erased=erased, in_force=in_force)
    # Per photo, what preparing it for training found (prepare's warnings), beside the intake's numbers.
    warnings = studio["reference"]["warnings_by_photo"] if studio["reference"] else {}
    return render(
        request,
        "consent/subject_detail.html",
        {
            **studio,
            "subject": subject,
            "status": status,
            "in_force": in_force,
            "records": subject.records.select_related("revocation").order_by("-signed_at"),
            "links": [(link, link_status(link)) for link in links.order_by("-created_at")],
            "assets": assets if can_photos else [],
            "photos": [(photo, warnings.get(photo.pk, [])) for photo in photos[:PHOTOS_SHOWN]]
            if photos is not None
            else [],
            "photo_count": photos.count() if photos is not None else 0,
            "can_photos": can_photos,
            "certificates": subject.deletion_certificates.all()
            if can(request, "consent.view_deletioncertificate")
            else [],
            "erasure_requests": subject.erasure_requests.select_related("requested_by").order_by(
                "-requested_at", "-id"
            )
            if can(request, "consent.view_erasurerequest")
            else [],
            "can_confirm": can(request, "consent.confirm_erasurerequest"),
            "can_send_link": can(request, "consent.add_consentlink"),
            "can_change_contact": can(request, "consent.change_subject", subject),
            "can_upload": can(request, "consent.upload_photos_subject", subject) and not erased,
            "can_revoke": can(request, "consent.add_consentrevocation"),
            "can_erase": can(request, "consent.erase_subject", subject) and not erased,
            "can_close_purpose": can(request, "consent.close_purpose_subject", subject) and not erased,
            "can_history": can(request, "consent.view_consentrecord"),
        },
    )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Subject)
def subject_contact(request: TenantRequest, pk: int) -> HttpResponse:
    """Change the address consent links and in-person codes go to (audited; links sent keep theirs)."""
    subject = get_subject(request, pk, "consent.change_subject")
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


def photo_warnings(photo: Asset) -> list[str]:
    """What training will think of the photo, in words, from the measurements intake stored.

    Intake refuses what cannot be used; these are the softer warnings the training side's `prepare`
    gives (same thresholds), shown here so staff can replace a weak photo before training.
    """
    quality = photo.quality or {}
    notes: list[str] = []
    sharpness = quality.get("sharpness")
    if sharpness is not None and sharpness < prepare.MIN_SHARPNESS:
        notes.append(
            f"looks blurry (sharpness {sharpness:.0f}, {prepare.MIN_SHARPNESS:.0f} or more is sharp)"
        )
    luma = quality.get("face_luma")
    low, high = prepare.EXPOSURE_MEAN_RANGE
    if luma is not None and not low <= luma <= high:
        notes.append(f"face {'dark' if luma < low else 'bright'} (brightness {luma:.0f} of 255)")
    return notes


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Subject)
def subject_photos(request: TenantRequest, pk: int) -> HttpResponse:
    subject = get_subject(request, pk)
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
            failure, status = failure_text(error), 400
        except vault.AssetIntegrityError as error:  # the enrollment embedding every photo is compared with
            failure, status = error.message, 500
        subject = get_subject(request, pk)
    photos = subject.assets.filter(kind__in=actions.PHOTO_KINDS).order_by("kind", "id")
    return render(
        request,
        "consent/photos.html",
        {
            "subject": subject,
            "photos": [(photo, photo_warnings(photo)) for photo in photos],
            "report": report,
            "failure": failure,
            "can_upload": can(request, "consent.upload_photos_subject", subject),
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Subject)
def subject_purpose_satisfied(request: TenantRequest, pk: int) -> HttpResponse:
    subject = get_subject(request, pk, "consent.close_purpose_subject")
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
    if not can(request, "consent.erase_subject", subject):
        explanation += " A tenant admin confirms it first (two-person rule); the clock starts then."
    return render(
        request,
        "components/confirm.html",
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
    subject = get_subject(request, pk, "consent.erase_subject")
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
        "components/confirm.html",
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
            _tell_revocation_outcome(request, revocation)
            return redirect("consent-subject", pk=record.subject_id)
    return render(
        request,
        "consent/record_revoke.html",
        {"record": record, "subject": record.subject, "form": form},
        status=400 if request.method == "POST" else 200,
    )


def _tell_revocation_outcome(request: TenantRequest, revocation: ConsentRevocation) -> None:
    """Say exactly what recording the revocation did: staff must know whether data is gone or waits.

    The gate refuses at once in every case; what differs is the erasure: started now (with its
    certificate), waiting for an admin (the two-person rule, with its deadline), or not due at all
    (another consent is still in force, or nothing is stored).
    """
    subject = revocation.record.subject
    stopped = f"Revocation of consent #{revocation.record_id} recorded: every use it covered stopped at once."
    pending = getattr(revocation, "erasure_request", None)
    if pending is not None and pending.is_pending:
        messages.warning(
            request,
            format_html(
                "{} Erasing the subject's data awaits a tenant admin's confirmation (two-person rule); "
                'unconfirmed, it runs at {} all the same. <a href="{}">Erasure request #{}</a>.',
                stopped,
                format_moment(pending.deadline),
                reverse("consent-erasure-requests"),
                pending.pk,
            ),
        )
        return
    certificate = (
        subject.deletion_certificates.filter(started_at__gte=revocation.revoked_at)
        .order_by("-started_at")
        .first()
    )
    if certificate is not None:
        if can(request, "consent.view_deletioncertificate"):
            where = format_html(
                '<a href="{}">Deletion certificate {}</a>.',
                reverse("consent-certificate", args=[certificate.pk]),
                certificate.public_id,
            )
        else:
            where = format_html(
                "Deletion certificate {} records it (tenant admins and legal reviewers can read it).",
                certificate.public_id,
            )
        messages.success(
            request,
            format_html(
                "{} No consent is left in force, so the subject's key was destroyed and their files are "
                "being deleted. {}",
                stopped,
                where,
            ),
        )
        return
    remaining = actions.records_in_force(subject)
    if remaining:
        messages.success(
            request,
            f"{stopped} Consent #{', #'.join(str(r.pk) for r in remaining)} is still in force, so nothing is "
            "erased: the subject's data stays for the purposes that consent covers.",
        )
    else:
        messages.success(
            request, f"{stopped} Nothing of the subject is stored, so there was nothing to erase."
        )
