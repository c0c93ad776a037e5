"""Release pages: release an approved output, the registry list and a release's page, its download, and
`/verify/` (thin: every write is an editing.releases.actions call, the same as the API's)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from audit.chain import canonical_json
from editing.models import Output, OutputStatus
from editing.releases import actions, gate, verify
from editing.releases.models import MAX_CAMPAIGN_CHARS, Release
from tenancy.access import get_for_tenant_or_404, tenant_object_view
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm, tenant_member_required, tenant_permission_required
from tenancy.pagination import keyset_page
from tenancy.permissions import has_perm

PAGE_SIZE = 20
APPROVED_LISTED = 10
# The pill of a release: valid, or the gate's reason in one word.
STATE_PILLS = {
    "": ("active", "Valid"),
    "consent_revoked": ("revoked", "Consent revoked"),
    "consent_expired": ("expired", "Consent ended"),
    "release_expired": ("expired", "Expired"),
    "output_vetoed": ("vetoed", "Vetoed"),
    "output_withdrawn": ("withdrawn", "Withdrawn"),
}


def _pill(refusal: gate.ReleaseRefusedError | None) -> tuple[str, str]:
    return STATE_PILLS.get(refusal.code if refusal else "", ("rejected", "Not valid"))


class ReleaseForm(forms.Form):
    campaign = forms.CharField(max_length=MAX_CAMPAIGN_CHARS, label="Campaign or client reference")
    channels = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, label="Channels")
    territories = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, label="Territories")
    ends_at = forms.DateField(label="Last day of use", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, channels: list[str], territories: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, values in (("channels", channels), ("territories", territories)):
            field = self.fields[name]
            assert isinstance(field, forms.MultipleChoiceField)
            field.choices = [(value, value) for value in values]


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Output)
def release_create(request: TenantRequest, pk: int) -> HttpResponse:
    """GET: the release form of an approved output (the consent's channels and territories to tick);
    POST: release it, then its page; a refusal is shown above the form, nothing written."""
    output = get_for_tenant_or_404(Output.objects.select_related("subject"), require_tenant(request), pk=pk)
    check_perm(request, "editing.add_release")
    try:
        record = gate.check(output)
    except gate.ReleaseRefusedError as refusal:
        # Showing why not is the page's answer (200), not a failed request.
        return render(request, "editing/release_form.html", {"output": output, "refusal": refusal})
    # A consent without listed channels (territories) allows any: the brand types its own.
    allowed = {"channels": list(record.channels), "territories": list(record.territories)}
    form = ReleaseForm(request.POST or None, **allowed)
    if not record.channels:
        form.fields["channels"] = forms.CharField(label="Channels (comma-separated)")
    if not record.territories:
        form.fields["territories"] = forms.CharField(label="Territories (comma-separated)")
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        scope = {
            name: data[name] if isinstance(data[name], list) else data[name].split(",")
            for name in ("channels", "territories")
        }
        try:
            release = actions.create_release(
                actor=request.user, output=output, campaign=data["campaign"], ends_at=data["ends_at"], **scope
            )
        except actions.ReleaseScopeError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        except gate.ReleaseRefusedError as refusal:
            messages.error(request, refusal.message)
        else:
            messages.success(request, f"Released as #{release.pk}.")
            return redirect("release-detail", release.pk)
    context = {"output": output, "form": form, "record": record, "today": timezone.localdate()}
    return render(request, "editing/release_form.html", context)


@require_GET
@tenant_permission_required("editing.view_release")
def release_list(request: TenantRequest) -> HttpResponse:
    """The tenant's releases, newest first, each with its state now (no query per row)."""
    releases = (
        Release.objects.for_tenant(require_tenant(request))
        .select_related("subject", "output", "consent_record__revocation")
        .order_by("-created_at", "-id")
    )
    subject_id = request.GET.get("subject", "")
    if subject_id.isdigit():
        releases = releases.filter(subject_id=int(subject_id))
    page_obj = keyset_page(request, releases, PAGE_SIZE)
    now = timezone.now()
    rows = [(release, _pill(gate.standing(release, now))) for release in page_obj]
    # Where staff start a release: the latest approved outputs (all of them: ?status=approved on /approvals/).
    approved = []
    if has_perm(request.user, request.tenant, "editing.add_release"):
        approved = list(
            Output.objects.for_tenant(require_tenant(request))
            .filter(status=OutputStatus.APPROVED, image__isnull=False)
            .select_related("subject")
            .order_by("-status_changed_at", "-id")[:APPROVED_LISTED]
        )
    context = {"page_obj": page_obj, "rows": rows, "approved": approved}
    return render(request, "editing/release_list.html", context)


@require_GET
@tenant_member_required
@tenant_object_view(Release)
def release_detail(request: TenantRequest, pk: int) -> HttpResponse:
    """A release: its clearance, whether it is valid now (the gate, as a download would run it), downloads."""
    release = get_for_tenant_or_404(
        Release.objects.select_related(
            "subject", "output__subject", "consent_record", "approver", "created_by"
        ),
        require_tenant(request),
        pk=pk,
    )
    check_perm(request, "editing.view_release", release)
    try:
        gate.check(release.output, consent_record=release.consent_record, ends_at=release.ends_at)
        refusal = None
    except gate.ReleaseRefusedError as refused:
        refusal = refused
    context = {
        "release": release,
        # Exactly the signed bytes: the signature verifies over this text (audit.chain.canonical_json).
        "clearance_json": canonical_json(release.clearance),
        "refusal": refusal,
        "pill": _pill(refusal),
        "downloads": release.downloads.select_related("downloaded_by")[:PAGE_SIZE],
        "can_download": has_perm(request.user, request.tenant, "editing.download_release", release),
    }
    return render(request, "editing/release_detail.html", context)


@require_GET
@tenant_member_required
@tenant_object_view(Release)
def release_download(request: TenantRequest, pk: int) -> HttpResponse:
    """The stamped file as an attachment, if the gate allows it now (audited); else the release's page."""
    release = get_for_tenant_or_404(Release, require_tenant(request), pk=pk)
    check_perm(request, "editing.download_release", release)
    try:
        released = actions.download_release(actor=request.user, release=release)
    except gate.ReleaseRefusedError as refusal:
        messages.error(request, f"Not downloaded: {refusal.message}")
        return redirect("release-detail", release.pk)
    return released_attachment(released)


def released_attachment(released: actions.ReleasedFile) -> HttpResponse:
    """The stamped file as a download: an attachment under its release's name, never cached."""
    response = HttpResponse(released.data, content_type=released.content_type)
    response["Content-Disposition"] = f'attachment; filename="{released.filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


class VerifyForm(forms.Form):
    image = forms.FileField(label="Image (JPEG or PNG)")


@require_http_methods(["GET", "POST"])
@login_required
def verify_page(request: HttpRequest) -> HttpResponse:
    """Drop an image: is it a release of this platform, valid now? Its record for the owning tenant only."""
    form = VerifyForm(request.POST or None, request.FILES or None)
    result = None
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            data = verify.read_upload(form.cleaned_data["image"])
            result = verify.verify_image(actor=request.user, data=data)
        except verify.VerifyError as error:
            form.add_error("image", str(error))
            status = 400
    elif request.method == "POST":
        status = 400
    pill = None
    if result is not None and result.found:
        # Outside the owning tenant there is no reason code: only "valid" or "not valid".
        pill = _pill(None if result.valid else gate.ReleaseRefusedError("", result.reason_code or "unknown"))
    return render(
        request, "editing/verify.html", {"form": form, "result": result, "pill": pill}, status=status
    )


verify_page.tenant_isolation_exempt = (  # type: ignore[attr-defined]
    "takes no object id; the release found is shown in full only to members of its own tenant"
)
