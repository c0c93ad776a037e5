"""A subject's file, decrypted for a member allowed to see it (never from a public URL)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from consent import vault
from consent.models import Asset, AssetKind
from consent.previews import NEVER_SERVED, preview_response
from tenancy.access import get_for_tenant_or_404, tenant_object_view
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm, tenant_member_required


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
    extension = asset.storage_name.rsplit(".", 2)[-2] if asset.storage_name.count(".") >= 2 else "bin"
    return inline_asset(request, asset, f"asset-{asset.pk}.{extension}")


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
