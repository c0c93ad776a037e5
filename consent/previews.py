"""What every route that shows a subject's generated or edited image serves: a review preview, never the file.

An output (consent.Asset kind `output`) may leave the platform only as a release (editing.releases):
stamped with its provenance, after the gate, audited. The approval queue, the studio, the subject's
portal and the API show outputs through the generic file routes, so those routes serve, for an output,
a rendition that is useless as a clean image: at most PREVIEW_MAX_SIDE pixels on its longer side (a
tiny model's 64 px output is enlarged to it, so the mark stays legible), with diagonal bands reading
PREVIEW_TEXT across the whole picture, re-encoded as a JPEG, inline and never cached. Released files
(kind `release`) are not served by those routes at all: only the release download hands them out.
"""

from __future__ import annotations

import io
import math

from django.http import HttpResponse
from PIL import Image, ImageDraw, ImageFont

from consent.models import Asset, AssetKind

PREVIEW_MAX_SIDE = 512
PREVIEW_TEXT = "PREVIEW - NOT RELEASED"  # ASCII: the default font has no en dash
# Kinds no file route serves: biometric templates, and released files (their own download runs the gate).
NEVER_SERVED = (AssetKind.FACE_EMBEDDING, AssetKind.RELEASE)
_BAND_SHARE = 0.09  # a band's height as a share of the preview's longer side
_ANGLE = 30
_JPEG_QUALITY = 80


def review_preview(data: bytes) -> bytes:
    """A JPEG of the image scaled to PREVIEW_MAX_SIDE with the preview mark across it."""
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    scale = PREVIEW_MAX_SIDE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS)
    # The bands are drawn level on a square that covers the image at any angle, then turned and cropped.
    side = math.ceil(math.hypot(*size))
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    band = max(12, round(PREVIEW_MAX_SIDE * _BAND_SHARE))
    font = ImageFont.load_default(size=round(band * 0.6))
    left, top, right, bottom = (round(edge) for edge in draw.textbbox((0, 0), PREVIEW_TEXT, font=font))
    step = band * 3
    for y in range(0, side, step):
        draw.rectangle((0, y, side, y + band), fill=(0, 0, 0, 150))
        baseline = y + (band - (bottom - top)) // 2 - top
        for x in range(0, side, right - left + band):
            draw.text((x - left, baseline), PREVIEW_TEXT, font=font, fill="white")
    turned = layer.rotate(_ANGLE, resample=Image.Resampling.BICUBIC)
    offset = ((side - size[0]) // 2, (side - size[1]) // 2)
    marked = Image.alpha_composite(
        image.convert("RGBA"), turned.crop((*offset, offset[0] + size[0], offset[1] + size[1]))
    )
    buffer = io.BytesIO()
    marked.convert("RGB").save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return buffer.getvalue()


def preview_response(asset: Asset, data: bytes) -> HttpResponse:
    """The review preview of an output, inline (never an attachment), never cached, sandboxed."""
    response = HttpResponse(review_preview(data), content_type="image/jpeg")
    response["Content-Disposition"] = f'inline; filename="preview-{asset.pk}.jpg"'
    response["Cache-Control"] = "private, no-store"
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    return response
