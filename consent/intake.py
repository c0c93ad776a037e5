"""Checks on a reference or enrollment photo: uploads are hostile input.

A photo is accepted only if every check below passes, in this order, and each
failure has its own code and a sentence a person can act on:

1. size: not empty, not over the byte limit (read with a cap, never whole);
2. type by content sniffing (JPEG, PNG, WebP magic bytes), never by name;
3. no markup riding inside the image that a browser would act on (HTML, script,
   SVG, MathML, PHP, any tag with an event handler such as `<img onerror=...>`): a
   polyglot that a browser or a naive server could be tricked into rendering;
4. the name's extension, if it has one, agrees with the content;
5. decoding: Pillow's decompression-bomb *warning* is an error here, the pixel
   count is capped, truncated or damaged data is refused;
6. EXIF orientation applied, the pixels brought to 8-bit RGB as a viewer shows them
   (16-bit greyscale scaled, transparency on white), then re-encoded into a fresh
   image, which drops every metadata block (EXIF incl. GPS, XMP, IPTC, comments, ICC);
7. exactly one face, big enough, sharp enough, neither too dark nor too bright;
8. optionally, the same person as the enrollment photo (128-d embedding distance).

A user mask for an edit (`check_mask`: a PNG painted white where the photo may change) passes
checks 1-5 and is then reduced to black and white at the photo's size.

`check_image` runs steps 1-6 alone, for images that are not photos of a subject
(a tenant's style photos, training.actions.styles, which add their own face rule);
`check_photo` runs all eight.

Nothing here touches the database or storage: `consent.actions` stores what passes.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePath
from typing import Protocol

import numpy as np
from PIL import Image, ImageOps

from personalization import faces


class RejectionCode(StrEnum):
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    UNSUPPORTED_TYPE = "unsupported_type"
    POLYGLOT = "polyglot"
    EXTENSION_MISMATCH = "extension_mismatch"
    DECOMPRESSION_BOMB = "decompression_bomb"
    TOO_MANY_PIXELS = "too_many_pixels"
    DAMAGED = "damaged"
    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    FACE_TOO_SMALL = "face_too_small"
    BLURRY = "blurry"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    DIFFERENT_PERSON = "different_person"
    MASK_SIZE = "mask_size"
    MASK_EMPTY = "mask_empty"


class PhotoRejectedError(Exception):
    def __init__(self, code: RejectionCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class IntakeLimits:
    """Thresholds, calibrated on ../shared/data/faces (see docs/compliance.md for the numbers)."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_face_px: int = 100
    # faces.sharpness (Laplacian variance of the face resampled to 256 px): the sharp
    # test photos score 11-330 with faces of 110-480 px; blurred 5x they score 1-8,
    # except faces so large that even blurred they keep ~100 px of real detail.
    min_sharpness: float = 10.0
    min_face_luma: float = 40.0
    max_face_luma: float = 220.0
    max_clipped_fraction: float = 0.3
    same_person_threshold: float = faces.SAME_PERSON_THRESHOLD


@dataclass(frozen=True)
class CleanPhoto:
    """A photo that passed every check: metadata-free bytes ready to encrypt, and its identity embedding."""

    data: bytes
    image_format: str
    content_type: str
    extension: str
    width: int
    height: int
    embedding: np.ndarray
    quality: dict[str, float] = field(default_factory=dict)
    distance_to_enrollment: float | None = None


@dataclass(frozen=True)
class CleanMask:
    """A user mask that passed: a fresh 8-bit PNG at the photo's size, 255 where the photo may change."""

    data: bytes
    width: int
    height: int
    # The share of the photo's pixels the mask lets the edit change (0 < coverage <= 1).
    coverage: float


@dataclass(frozen=True)
class _Format:
    name: str  # Pillow's format name
    content_type: str
    extension: str
    extensions: frozenset[str]
    save_options: tuple[tuple[str, object], ...]


_FORMATS = {
    "JPEG": _Format(
        "JPEG", "image/jpeg", "jpg", frozenset({"jpg", "jpeg", "jpe"}), (("quality", 95), ("subsampling", 0))
    ),
    "PNG": _Format("PNG", "image/png", "png", frozenset({"png"}), (("optimize", False),)),
    "WEBP": _Format("WEBP", "image/webp", "webp", frozenset({"webp"}), (("quality", 95),)),
}
# Markup a browser would act on, case-insensitive: tags that carry or load script (SVG and
# MathML run script of their own), and any tag with an event-handler attribute (`<img
# src=x onerror=...>`, `<details ontoggle=...>`). Each pattern needs a delimiter after the
# name, and the handler must sit inside a tag (`<name ... on<event>=`), which keeps the
# chance of a false hit inside compressed image data negligible (about 1e-13 per byte)
# and lets ordinary metadata text ("taken on=...", XMP attributes) through.
_MARKUP = re.compile(
    rb"<(?:script|html|body|iframe|object|embed|meta|svg|math|!doctype\s+html)[\s>/]"
    rb"|<\?php"
    rb"|<[a-z][a-z0-9-]{0,30}[\s/](?:[^<>]{0,500}?[\s/\"'])?on[a-z]{3,40}\s*=",
    re.IGNORECASE,
)


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def read_capped(stream: Readable, max_bytes: int) -> bytes:
    """Read at most max_bytes + 1 bytes: enough to know a file is too large without holding it whole."""
    chunks: list[bytes] = []
    remaining = max_bytes + 1
    while remaining > 0:
        chunk = stream.read(min(remaining, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def sniff_format(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _decode(data: bytes, fmt: _Format, limits: IntakeLimits) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[fmt.name])
            width, height = image.size
            if width * height > limits.max_pixels:
                raise PhotoRejectedError(
                    RejectionCode.TOO_MANY_PIXELS,
                    f"The photo is {width}x{height} pixels; the limit is {limits.max_pixels // 1_000_000} "
                    "megapixels. Please upload a smaller version.",
                )
            image.load()
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise PhotoRejectedError(
                RejectionCode.DECOMPRESSION_BOMB,
                "The file declares an enormous image (a decompression bomb); it was not opened.",
            ) from exc
        except PhotoRejectedError:
            raise
        except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError) as exc:
            raise PhotoRejectedError(
                RejectionCode.DAMAGED, f"The {fmt.name} data is damaged or truncated and cannot be read."
            ) from exc
    return image


def _as_viewed(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """8-bit RGB pixels as an image viewer shows the photo, whatever mode the decoder produced.

    Pillow's convert("RGB") clips integer greyscale (I;16 from a 16-bit PNG, I) at 255
    instead of scaling it, which turned a 16-bit scan white and lost its face; and it keeps
    whatever colour lies under transparent pixels (often black), which a viewer never shows.
    So 16-bit grey is scaled to 8 bits, and transparency (an alpha channel, or a palette or
    colour key marked transparent) is composited on white. CMYK, YCbCr, palette and 1-bit
    images convert correctly as they are. (Pillow's float mode F never comes out of the
    JPEG, PNG or WebP decoders, the only ones intake opens.) A mask composites on black instead:
    what its painter left transparent was not painted.
    """
    if image.mode.startswith("I"):
        grey = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        under = Image.new("RGBA", image.size, (*background, 255))
        image = Image.alpha_composite(under, image.convert("RGBA"))
    return image.convert("RGB")


def _strip(image: Image.Image, fmt: _Format) -> tuple[np.ndarray, bytes]:
    """Upright pixels and their re-encoding without any metadata.

    A fresh image built from the pixel array carries no `info`, so no EXIF (GPS),
    XMP, comment or ICC block can ride along into the saved file.
    """
    upright = ImageOps.exif_transpose(image)
    rgb = np.asarray(_as_viewed(upright), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt.name, **dict(fmt.save_options))
    return rgb, buffer.getvalue()


def _check_face(rgb: np.ndarray, limits: IntakeLimits) -> tuple[faces.Face, dict[str, float]]:
    found = faces.detect_faces(rgb)
    if not found:
        raise PhotoRejectedError(
            RejectionCode.NO_FACE, "No face was found. Upload a photo where the face is clearly visible."
        )
    if len(found) > 1:
        raise PhotoRejectedError(
            RejectionCode.MULTIPLE_FACES,
            f"{len(found)} faces were found; a reference photo must show exactly one person.",
        )
    face = found[0]
    face_px = min(face.box.width, face.box.height)
    if face_px < limits.min_face_px:
        raise PhotoRejectedError(
            RejectionCode.FACE_TOO_SMALL,
            f"The face is {face_px} pixels wide; at least {limits.min_face_px} are needed. "
            "Use a closer or larger photo.",
        )
    # Exposure first: a dark face also has little contrast, which reads as blur.
    light = faces.exposure(rgb, face)
    if light.mean < limits.min_face_luma or light.dark_fraction > limits.max_clipped_fraction:
        raise PhotoRejectedError(RejectionCode.TOO_DARK, "The face is too dark. Upload a better-lit photo.")
    if light.mean > limits.max_face_luma or light.bright_fraction > limits.max_clipped_fraction:
        raise PhotoRejectedError(
            RejectionCode.TOO_BRIGHT,
            "The face is overexposed (too bright). Upload a photo with softer light.",
        )
    focus = faces.sharpness(rgb, face)
    if focus < limits.min_sharpness:
        raise PhotoRejectedError(RejectionCode.BLURRY, "The face is blurry. Upload a photo in sharp focus.")
    return face, {"face_px": float(face_px), "sharpness": focus, "face_luma": light.mean}


def _open_checked(
    data: bytes, filename: str, limits: IntakeLimits, formats: tuple[str, ...], expected: str
) -> tuple[Image.Image, _Format]:
    """Checks 1-5 (size, type, markup, extension, decoding) for one of `formats` (Pillow's names, which
    `expected` names for a person): the decoded image and its format, or the first failure."""
    if not data:
        raise PhotoRejectedError(RejectionCode.EMPTY, "The file is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise PhotoRejectedError(
            RejectionCode.TOO_LARGE,
            f"The file is larger than the {_megabytes(limits.max_bytes)} limit.",
        )
    sniffed = sniff_format(data)
    if sniffed is None or sniffed not in formats:
        raise PhotoRejectedError(
            RejectionCode.UNSUPPORTED_TYPE,
            f"This is not {expected} (checked from the file's content, not its name).",
        )
    fmt = _FORMATS[sniffed]
    if _MARKUP.search(data):
        raise PhotoRejectedError(
            RejectionCode.POLYGLOT,
            "The file hides web page or script code inside the image (a polyglot file); it was refused.",
        )
    suffix = PurePath(filename).suffix.lower().lstrip(".")
    if suffix and suffix not in fmt.extensions:
        raise PhotoRejectedError(
            RejectionCode.EXTENSION_MISMATCH,
            f"The file's content is {fmt.name} but its name ends in .{suffix}; rename it or export it again.",
        )
    return _decode(data, fmt, limits), fmt


@dataclass(frozen=True)
class CleanImage:
    """An image that passed the hostile-input checks (steps 1-6): metadata-free bytes and its pixels.

    What every upload of an image goes through, whatever it shows; photos of a
    subject add the face rules (check_photo), style photos their own (training).
    """

    data: bytes
    rgb: np.ndarray
    image_format: str
    content_type: str
    extension: str

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def check_image(data: bytes, filename: str, limits: IntakeLimits) -> CleanImage:
    """Steps 1-6 on one uploaded file (size, type, markup, extension, decoding, metadata stripped);
    raise PhotoRejectedError with the first failure."""
    image, fmt = _open_checked(data, filename, limits, tuple(_FORMATS), "a JPEG, PNG or WebP photo")
    rgb, clean = _strip(image, fmt)
    return CleanImage(
        data=clean, rgb=rgb, image_format=fmt.name, content_type=fmt.content_type, extension=fmt.extension
    )


def check_photo(
    data: bytes,
    filename: str,
    limits: IntakeLimits,
    *,
    enrollment_embedding: np.ndarray | None = None,
) -> CleanPhoto:
    """Run every check on one uploaded file; raise PhotoRejectedError with the first failure."""
    image = check_image(data, filename, limits)
    rgb = image.rgb
    face, quality = _check_face(rgb, limits)
    embedding = faces.face_embedding(rgb, face)
    distance: float | None = None
    if enrollment_embedding is not None:
        distance = faces.embedding_distance(embedding, enrollment_embedding)
        if distance > limits.same_person_threshold:
            raise PhotoRejectedError(
                RejectionCode.DIFFERENT_PERSON,
                "This does not look like the same person as the subject's enrollment photo.",
            )
    return CleanPhoto(
        data=image.data,
        image_format=image.image_format,
        content_type=image.content_type,
        extension=image.extension,
        width=image.width,
        height=image.height,
        embedding=embedding,
        quality=quality,
        distance_to_enrollment=distance,
    )


# A painted mask whose sides are within this fraction of the photo's proportions is scaled to the photo;
# one of other proportions was painted for another picture and is refused.
MASK_ASPECT_TOLERANCE = 0.01


def check_mask(data: bytes, filename: str, limits: IntakeLimits, *, photo_size: tuple[int, int]) -> CleanMask:
    """A PNG painted white where the photo (of `photo_size`, width x height) may change, checked as hostile.

    Light pixels (grey above 127) may change, dark and transparent ones stay. A mask of the
    photo's proportions is scaled to its size (nearest neighbour, so it stays black and white);
    any other size, and a mask that marks nothing, are refused with the reason.
    """
    image, _ = _open_checked(data, filename, limits, ("PNG",), "a PNG image")
    width, height = photo_size
    if image.size != photo_size:
        ratio, photo_ratio = image.width / image.height, width / height
        if abs(ratio - photo_ratio) > MASK_ASPECT_TOLERANCE * photo_ratio:
            raise PhotoRejectedError(
                RejectionCode.MASK_SIZE,
                f"The mask is {image.width}x{image.height} pixels but the photo is {width}x{height}: paint "
                "the mask over the photo itself, at its size or in its proportions.",
            )
    painted = np.asarray(_as_viewed(ImageOps.exif_transpose(image), background=(0, 0, 0)).convert("L")) > 127
    mask = Image.fromarray(painted.astype(np.uint8) * 255, mode="L")
    if mask.size != photo_size:
        mask = mask.resize(photo_size, Image.Resampling.NEAREST)
    pixels = np.asarray(mask) > 0
    if not pixels.any():
        raise PhotoRejectedError(
            RejectionCode.MASK_EMPTY,
            "The mask marks nothing to change: paint the area that may change white (the rest black).",
        )
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return CleanMask(data=buffer.getvalue(), width=width, height=height, coverage=float(pixels.mean()))
