"""The two entry points: `stamp` a released image with every layer, `inspect` any image for them.

Order (each step works on the result of the one before, and none undoes an earlier one):
1. an upscale to watermark.MIN_SIDE when the image is smaller (the tiny model's 64 px outputs):
   a mark in fewer pixels does not survive a JPEG re-encode and a 50% resize;
2. visible label (pixels), when the tenant requires it, drawn at the released size so it is sharp;
3. watermark (pixels): the release number;
4. one encode (JPEG q95 4:4:4, or PNG) with the XMP DigitalSourceType packet;
5. C2PA manifest, signed over all of those bytes (hard binding), so nothing may change after it.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

from editing.provenance import c2pa, label, watermark, xmp
from editing.provenance.certificates import SigningIdentity

# Above this many pixels an upload is refused before it is decoded (LIKENESS_MAX_IMAGE_PIXELS' default).
DEFAULT_MAX_PIXELS = 40_000_000
_FORMATS: dict[str, xmp.Format] = {"image/jpeg": "JPEG", "image/png": "PNG"}


@dataclass(frozen=True)
class Inspection:
    """Every provenance layer found in one file; `sha256` is the exact-bytes key of the registry."""

    sha256: str
    mime_type: str
    size: tuple[int, int]
    manifest: c2pa.ManifestReport
    watermark: int | None
    xmp_source_type: str | None


def stamp(
    image_bytes: bytes,
    *,
    kind: Literal["generation", "edit"],
    release_id: int,
    clearance: Mapping[str, Any],
    source_photo_sha256: str | None,
    visible_label: bool,
    signer: SigningIdentity,
) -> bytes:
    """The released file: `image_bytes` (a JPEG or PNG output) with label, watermark, XMP and manifest.

    `release_id` is the release's number in the registry (0 to 2^32-1): the watermark carries it
    and the clearance's `release_id` is set from it. `clearance` holds the other fields of
    c2pa.CLEARANCE_FIELDS. The output keeps the input's format; its size is the input's, or an
    integer multiple of it when the input is smaller than watermark.MIN_SIDE.
    """
    mime_type = c2pa.mime_type_of(image_bytes)
    given = clearance.get("release_id")
    if given is not None and str(given) != str(release_id):
        raise c2pa.ProvenanceError("the clearance names another release than release_id.")
    fields = {**clearance, "release_id": str(release_id)}
    definition = c2pa.manifest_definition(
        kind=kind,
        title=f"Likeness release {release_id}",
        mime_type=mime_type,
        clearance=fields,
        source_photo_sha256=source_photo_sha256,
    )
    with Image.open(io.BytesIO(image_bytes)) as opened:
        image = opened.convert("RGB")
    shorter = min(image.size)
    if shorter < watermark.MIN_SIDE:
        factor = math.ceil(watermark.MIN_SIDE / shorter)
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)
    if visible_label:
        image = label.apply(image)
    marked = watermark.embed(image, release_id)
    source_type = (
        c2pa.TRAINED_ALGORITHMIC_MEDIA
        if kind == "generation"
        else c2pa.COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
    )
    encoded = xmp.encode(marked, _FORMATS[mime_type], source_type)
    return c2pa.sign(encoded, definition, signer)


def inspect(
    data: bytes,
    *,
    sizes: Iterable[tuple[int, int]] = (),
    trust_anchors_pem: bytes | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Inspection:
    """What `data` carries: its hash, manifest report, watermark number and XMP source type.

    `sizes` are the (width, height) of released files, so that a resized copy's watermark is read
    at its release size. Raises c2pa.ProvenanceError for anything but a JPEG or PNG of at most
    `max_pixels` pixels.
    """
    mime_type = c2pa.mime_type_of(data)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > max_pixels:
                raise c2pa.ProvenanceError(f"the image has more than {max_pixels} pixels.")
            image = opened.convert("RGB")
    except (OSError, Image.DecompressionBombError):
        raise c2pa.ProvenanceError("the file is not a readable JPEG or PNG image.") from None
    return Inspection(
        sha256=hashlib.sha256(data).hexdigest(),
        mime_type=mime_type,
        size=image.size,
        manifest=c2pa.read(data, mime_type, trust_anchors_pem=trust_anchors_pem),
        watermark=watermark.decode(image, sizes),
        xmp_source_type=xmp.read_source_type(data),
    )
