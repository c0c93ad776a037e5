"""Real photos and hand-made hostile files for the intake tests."""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image
from PIL.PngImagePlugin import PngInfo
from skimage import data as skdata

FACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"


@cache
def photo_bytes(name: str, max_side: int = 1400) -> bytes:
    """A face photo from ../shared/data/faces, downscaled (every face stays over 150 px) and saved as JPEG."""
    image = Image.open(FACES / name).convert("RGB")
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def original_bytes(name: str) -> bytes:
    return (FACES / name).read_bytes()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def decompression_bomb_png(side: int = 10_000) -> bytes:
    """A real, fully decodable 1-bit PNG of side x side pixels that compresses to a few KB.

    10,000 x 10,000 = 100 M pixels is over Pillow's MAX_IMAGE_PIXELS (89 M) but under
    twice that, so Pillow only *warns*: the intake must turn that warning into a refusal.
    """
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )


def png_html_polyglot() -> bytes:
    """A valid PNG of a real face whose text chunk is an HTML page with a script."""
    return png_with_text(
        photo_bytes("obama2.jpg", 400),
        "<html><body><script>fetch('/api/v1/subjects/').then(alert)</script></body></html>",
    )


def with_gps_exif(jpeg: bytes) -> bytes:
    image = Image.open(io.BytesIO(jpeg))
    exif = image.getexif()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (41.0, 52.0, 55.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (87.0, 37.0, 40.0)
    exif[ExifTags.Base.Make] = "PhoneMaker"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def sideways_with_orientation(jpeg: bytes) -> bytes:
    """The photo rotated a quarter turn, with the EXIF tag that tells a viewer to turn it back."""
    upright = Image.open(io.BytesIO(jpeg))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    buffer = io.BytesIO()
    upright.rotate(90, expand=True).save(buffer, format="JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def no_face_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(skdata.coffee()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def blurred(jpeg: bytes) -> bytes:
    image = Image.open(io.BytesIO(jpeg))
    small = image.resize((image.width // 5, image.height // 5)).resize(image.size)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def darkened(jpeg: bytes) -> bytes:
    rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    buffer = io.BytesIO()
    Image.fromarray((rgb // 6).astype(np.uint8)).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def as_format(jpeg: bytes, fmt: str) -> bytes:
    return _encoded(Image.open(io.BytesIO(jpeg)), fmt)


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def grey16_png(jpeg: bytes) -> bytes:
    """The photo as a 16-bit greyscale PNG (scanners and raw converters export them): Pillow reads I;16."""
    grey = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), dtype=np.uint16) * 257
    return _encoded(Image.fromarray(grey), "PNG")


def in_mode(jpeg: bytes, mode: str, fmt: str = "PNG") -> bytes:
    """The photo converted to a Pillow mode (CMYK, 1-bit, greyscale with alpha...) and saved as `fmt`."""
    return _encoded(Image.open(io.BytesIO(jpeg)).convert(mode), fmt)


def cut_out_png(jpeg: bytes) -> bytes:
    """The face opaque, a wide border fully transparent and black underneath (how cut-out tools save)."""
    rgba = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGBA")).copy()
    border = min(rgba.shape[0], rgba.shape[1]) // 12
    for edge in (np.s_[:border], np.s_[-border:]):
        rgba[edge, :, :] = 0
        rgba[:, edge, :] = 0
    return _encoded(Image.fromarray(rgba), "PNG")


def palette_with_transparency_png(jpeg: bytes) -> bytes:
    """A 256-colour palette PNG whose first palette entry is transparent (a tRNS chunk)."""
    palette = Image.open(io.BytesIO(jpeg)).convert("RGB").quantize(256)
    return _encoded(palette, "PNG", transparency=0)


def png_with_text(jpeg: bytes, text: str) -> bytes:
    info = PngInfo()
    info.add_text("Comment", text)
    return _encoded(Image.open(io.BytesIO(jpeg)), "PNG", pnginfo=info)


def jpeg_with_comment(jpeg: bytes, text: str) -> bytes:
    return _encoded(Image.open(io.BytesIO(jpeg)), "JPEG", quality=92, comment=text.encode())


def webp_with_xmp(jpeg: bytes, xmp: str) -> bytes:
    return _encoded(Image.open(io.BytesIO(jpeg)), "WEBP", quality=90, xmp=xmp.encode())
