"""A subject's file, decrypted for a member allowed to see it (never from a public URL); deleting a photo."""

from __future__ import annotations

import mimetypes
from pathlib import PurePath

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from consent import actions, vault
from consent.models import Asset, AssetKind
from consent.previews import NEVER_SERVED, preview_response
from tenancy.access import get_for_tenant_or_404, tenant_object_view
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm, tenant_member_required

MAX_NAME_CHARS = 80


def download_name(asset: Asset) -> str:
    """`<original name or kind>-<id>.<ext>`: recognisable in a downloads folder, safe in a header.

    The uploader's name is reduced to ASCII letters, digits and dashes (it goes into
    Content-Disposition); the extension follows the stored type, not the uploaded name.
    """
    stem = slugify(PurePath(asset.label).stem)[:MAX_NAME_CHARS] or slugify(asset.kind)
    extension = {"image/jpeg": ".jpg"}.get(asset.content_type) or mimetypes.guess_extension(
        asset.content_type
    )
    if extension is None:
        stored = asset.storage_name.split("/")[-1].split(".")  # <uuid>.<ext>.lke
        extension = f".{stored[-2]}" if len(stored) >= 3 else ".bin"
    return f"{stem}-{asset.pk}{extension}"


@require_GET
@never_cache
@tenant_member_required
@tenant_object_view(Asset)
def asset_file(request: TenantRequest, pk: int) -> HttpResponse:
    """Decrypt on the fly for a member allowed to see it; face embeddings and released files are never
    served, an output only as its review preview (consent.previews)."""
    servable = Asset.objects.exclude(kind__in=NEVER_SERVED)
    asset = get_for_tenant_or_404(servable, require_tenant(request), pk=pk)
    check_perm(request, "consent.view_asset", asset)
    return inline_asset(request, asset, download_name(asset))


def inline_asset(request: HttpRequest, asset: Asset, filename: str) -> HttpResponse:
    """A stored file decrypted for display (the caller checked who may see it): 404 once its key is
    destroyed, the reason (500) if it fails its checksum; never cached, sandboxed if opened on its own.
    An output is shown as its review preview, a released file or face embedding never (consent.previews)."""
    if asset.kind in NEVER_SERVED:
        raise Http404("Not found.")
    try:
        data = vault.read_asset(asset)
    except vault.KeyDestroyedError:
        raise Http404("Not found.") from None
    except vault.AssetIntegrityError as error:
        # A server-side fault, not the request's: a 500, but answered here with its reason, not a traceback.
        return render(request, "consent/asset_damaged.html", {"message": error.message}, status=500)
    if asset.kind == AssetKind.OUTPUT:
        return preview_response(asset, data)
    response = HttpResponse(data, content_type=asset.content_type)
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    return response


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Asset)
def photo_delete(request: TenantRequest, pk: int) -> HttpResponse:
    """Confirm, then delete one uploaded photo (consent.actions.delete_photo says what may go)."""
    photo = get_for_tenant_or_404(
        Asset.objects.filter(kind__in=actions.PHOTO_KINDS).select_related("subject"),
        require_tenant(request),
        pk=pk,
    )
    check_perm(request, "consent.upload_photos_subject", photo.subject)
    failure = ""
    if request.method == "POST":
        try:
            actions.delete_photo(actor=request.user, photo=photo)
        except actions.ConsentActionError as error:
            failure = error.message
        else:
            messages.success(
                request, f"Deleted {photo.label or photo.get_kind_display()} and its face measurements."
            )
            return redirect("consent-subject-photos", pk=photo.subject_id)
    return render(
        request,
        "components/confirm.html",
        {
            "subject": photo.subject,
            "title": f"Delete {photo.get_kind_display().lower()} “{photo.label or f'#{photo.pk}'}”",
            "explanation": (
                f"The photo ({filesizeformat(photo.size_bytes)}) and the face measurements made from it are "
                "deleted for good. A reference set built from it is then out of date: the next training "
                "builds a new one from the photos that remain."
            ),
            "button": "Delete the photo",
            "danger": True,
            "back_url": reverse("consent-subject-photos", args=[photo.subject_id]),
            "back_label": "Back to the photos",
            "failure": failure,
        },
        status=400 if failure else 200,
    )
