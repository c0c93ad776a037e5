"""Hostile-input checks on single files, without the database (uploads through the action: test_uploads)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import ExifTags, Image

from consent import intake
from consent.intake import RejectionCode
from personalization import faces

from . import photos

LIMITS = intake.IntakeLimits()


def _rejected(
    data: bytes, name: str, limits: intake.IntakeLimits = LIMITS, **kwargs
) -> intake.PhotoRejectedError:
    with pytest.raises(intake.PhotoRejectedError) as caught:
        intake.check_photo(data, name, limits, **kwargs)
    return caught.value


def _embedding(name: str):
    return intake.check_photo(photos.photo_bytes(name), name, LIMITS).embedding


@pytest.mark.parametrize(
    ("make", "name", "code"),
    [
        (lambda: b"", "empty.jpg", RejectionCode.EMPTY),
        (photos.decompression_bomb_png, "bomb.png", RejectionCode.DECOMPRESSION_BOMB),
        (photos.png_html_polyglot, "innocent.jpg", RejectionCode.POLYGLOT),
        (
            lambda: b"<!DOCTYPE html><html><body>hello</body></html>",
            "page.jpg",
            RejectionCode.UNSUPPORTED_TYPE,
        ),
        (lambda: b"GIF89a" + b"\x00" * 64, "anim.gif", RejectionCode.UNSUPPORTED_TYPE),
        (lambda: photos.photo_bytes("obama.jpg"), "obama.png", RejectionCode.EXTENSION_MISMATCH),
        (lambda: photos.photo_bytes("obama.jpg")[:4000], "cut.jpg", RejectionCode.DAMAGED),
        (lambda: photos.photo_bytes("two_people.jpg"), "two.jpg", RejectionCode.MULTIPLE_FACES),
        (photos.no_face_jpeg, "coffee.jpg", RejectionCode.NO_FACE),
        (lambda: photos.blurred(photos.photo_bytes("obama.jpg", 1000)), "soft.jpg", RejectionCode.BLURRY),
        (lambda: photos.darkened(photos.photo_bytes("obama.jpg")), "night.jpg", RejectionCode.TOO_DARK),
        (lambda: photos.photo_bytes("obama.jpg", 300), "tiny.jpg", RejectionCode.FACE_TOO_SMALL),
    ],
)
def test_each_hostile_or_unusable_file_gets_its_own_reason(make, name, code) -> None:
    error = _rejected(make(), name)
    assert error.code == code
    assert error.message


def test_size_and_pixel_limits() -> None:
    data = photos.photo_bytes("obama.jpg")
    assert (
        _rejected(data, "big.jpg", intake.IntakeLimits(max_bytes=len(data) - 1)).code
        == RejectionCode.TOO_LARGE
    )
    small_pixels = intake.IntakeLimits(max_pixels=500_000)
    assert _rejected(data, "wide.jpg", small_pixels).code == RejectionCode.TOO_MANY_PIXELS


def test_the_bomb_is_only_a_warning_for_pillow_and_still_refused() -> None:
    bomb = photos.decompression_bomb_png()
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(io.BytesIO(bomb))
    assert _rejected(bomb, "bomb.png").code == RejectionCode.DECOMPRESSION_BOMB


def test_read_capped_stops_one_byte_past_the_limit() -> None:
    assert len(intake.read_capped(io.BytesIO(b"x" * 10_000), 100)) == 101
    assert intake.read_capped(io.BytesIO(b"abc"), 100) == b"abc"


def test_gps_and_all_metadata_are_stripped() -> None:
    source = photos.with_gps_exif(photos.photo_bytes("obama2.jpg"))
    assert Image.open(io.BytesIO(source)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    clean = intake.check_photo(source, "holiday.jpg", LIMITS)
    stored = Image.open(io.BytesIO(clean.data))
    assert stored.format == "JPEG"
    assert len(stored.getexif()) == 0
    assert not stored.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert not {"exif", "xmp", "icc_profile", "photoshop", "comment"} & set(stored.info)
    assert b"PhoneMaker" not in clean.data


def test_exif_orientation_is_applied_before_stripping() -> None:
    upright = photos.photo_bytes("obama2.jpg")
    width, height = Image.open(io.BytesIO(upright)).size
    clean = intake.check_photo(photos.sideways_with_orientation(upright), "phone.jpg", LIMITS)
    assert (clean.width, clean.height) == (width, height)
    assert len(Image.open(io.BytesIO(clean.data)).getexif()) == 0


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_png_and_webp_are_accepted_and_kept_in_their_format(fmt: str) -> None:
    clean = intake.check_photo(
        photos.as_format(photos.photo_bytes("obama2.jpg"), fmt), f"p.{fmt.lower()}", LIMITS
    )
    assert clean.image_format == fmt
    assert Image.open(io.BytesIO(clean.data)).format == fmt


def test_identity_consistency_against_the_enrollment_embedding() -> None:
    enrollment = _embedding("obama.jpg")
    same = intake.check_photo(
        photos.photo_bytes("obama2.jpg"), "o2.jpg", LIMITS, enrollment_embedding=enrollment
    )
    assert same.distance_to_enrollment is not None
    assert same.distance_to_enrollment < faces.SAME_PERSON_THRESHOLD
    error = _rejected(photos.photo_bytes("biden.jpg"), "b.jpg", enrollment_embedding=enrollment)
    assert error.code == RejectionCode.DIFFERENT_PERSON
    assert "does not look like the same person" in error.message


def _luma(data: bytes) -> float:
    return float(np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64).mean())


def test_a_16_bit_greyscale_png_keeps_its_tones_and_its_face() -> None:
    source = photos.photo_bytes("obama2.jpg")
    grey16 = photos.grey16_png(source)
    assert Image.open(io.BytesIO(grey16)).mode == "I;16"

    clean = intake.check_photo(grey16, "scan.png", LIMITS)

    assert clean.image_format == "PNG" and clean.quality["face_px"] >= LIMITS.min_face_px
    # Scaled 65535 -> 255, not clipped at 255 (which turned every pixel but the darkest white).
    assert abs(_luma(clean.data) - _luma(source)) < 1.0
    assert clean.distance_to_enrollment is None
    same = faces.embedding_distance(clean.embedding, _embedding("obama2.jpg"))
    assert same < faces.SAME_PERSON_THRESHOLD / 2


@pytest.mark.parametrize(
    ("make", "name", "mode"),
    [
        (lambda jpeg: photos.in_mode(jpeg, "CMYK", "JPEG"), "print.jpg", "CMYK"),
        (lambda jpeg: photos.in_mode(jpeg, "LA"), "grey-alpha.png", "LA"),
        (photos.palette_with_transparency_png, "palette.png", "P"),
        (photos.cut_out_png, "cut-out.png", "RGBA"),
    ],
)
def test_other_pixel_modes_are_accepted_as_a_viewer_shows_them(make, name, mode) -> None:
    source = photos.photo_bytes("obama2.jpg")
    data = make(source)
    assert Image.open(io.BytesIO(data)).mode == mode
    clean = intake.check_photo(data, name, LIMITS)
    stored = Image.open(io.BytesIO(clean.data))
    assert stored.mode == "RGB" and not stored.info.get("transparency")
    if mode == "RGBA":
        # Transparent pixels are shown on white, as a viewer does, not as the black stored under them.
        corner = np.asarray(stored)[:10, :10]
        assert corner.min() == 255


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda jpeg: photos.png_with_text(jpeg, '<svg xmlns="http://www.w3.org/2000/svg"/>'), "a.png"),
        (lambda jpeg: photos.png_with_text(jpeg, "<SVG/onload=alert(document.cookie)>"), "b.png"),
        (lambda jpeg: photos.jpeg_with_comment(jpeg, "<img src=x onerror=alert(1)>"), "c.jpg"),
        (lambda jpeg: photos.jpeg_with_comment(jpeg, '<IMG SRC="x" ONERROR = "alert(1)">'), "d.jpg"),
        (lambda jpeg: photos.webp_with_xmp(jpeg, '<a href="#" onfocus="alert(1)" autofocus>x</a>'), "e.webp"),
        (lambda jpeg: photos.png_with_text(jpeg, "<details open ontoggle=alert(1)>"), "f.png"),
        (lambda jpeg: photos.jpeg_with_comment(jpeg, "<math><mi xlink:href=x>"), "g.jpg"),
    ],
    ids=["svg", "svg-onload", "img-onerror", "img-onerror-upper", "webp-xmp-onfocus", "ontoggle", "math"],
)
def test_markup_that_runs_script_is_a_polyglot(make, name) -> None:
    data = make(photos.photo_bytes("obama2.jpg", 400))
    assert intake.sniff_format(data) is not None
    assert _rejected(data, name).code == RejectionCode.POLYGLOT


def test_ordinary_metadata_text_is_not_taken_for_markup() -> None:
    """Real photos carry XMP and comments; only tags a browser acts on are refused, not every '<' or 'on'."""
    source = photos.photo_bytes("obama2.jpg")
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description photoshop:Credit="Shot on location"'
        ' xmp:CreatorTool="Camera &lt;v2&gt;"/></rdf:RDF></x:xmpmeta>'
    )
    for data, name in [
        (photos.webp_with_xmp(source, xmp), "x.webp"),
        (photos.jpeg_with_comment(source, "taken on=2027-05-01 <3 imaging one image"), "c.jpg"),
    ]:
        assert intake.check_photo(data, name, LIMITS).image_format in {"WEBP", "JPEG"}


# --- user masks of an edit (check_mask) ---------------------------------------------------------------------
def _mask_png(size: tuple[int, int], painted: tuple[int, int, int, int] | None, mode: str = "L") -> bytes:
    """A mask of `size` (black, or transparent in RGBA) with the box `painted` white."""
    image = Image.new(mode, size, 0)
    if painted is not None:
        white = 255 if mode == "L" else (255, 255, 255, 255)
        image.paste(white, painted)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _mask_rejected(data: bytes, name: str = "mask.png", size: tuple[int, int] = (200, 100)) -> RejectionCode:
    with pytest.raises(intake.PhotoRejectedError) as caught:
        intake.check_mask(data, name, LIMITS, photo_size=size)
    assert caught.value.message
    return caught.value.code


def test_a_mask_of_the_photos_size_becomes_black_and_white() -> None:
    clean = intake.check_mask(
        _mask_png((200, 100), (50, 0, 100, 100)), "m.png", LIMITS, photo_size=(200, 100)
    )
    pixels = np.asarray(Image.open(io.BytesIO(clean.data)))
    assert pixels.shape == (100, 200) and set(np.unique(pixels)) == {0, 255}
    assert (pixels[:, 50:100] == 255).all() and (pixels[:, :50] == 0).all()
    assert clean.coverage == pytest.approx(0.25)


def test_a_mask_in_the_photos_proportions_is_scaled_to_it_and_stays_black_and_white() -> None:
    clean = intake.check_mask(_mask_png((100, 50), (25, 0, 50, 50)), "m.png", LIMITS, photo_size=(200, 100))
    pixels = np.asarray(Image.open(io.BytesIO(clean.data)))
    assert pixels.shape == (100, 200) and set(np.unique(pixels)) == {0, 255}
    assert clean.coverage == pytest.approx(0.25)


def test_what_a_painter_left_transparent_stays() -> None:
    clean = intake.check_mask(
        _mask_png((200, 100), (0, 0, 20, 100), mode="RGBA"), "m.png", LIMITS, photo_size=(200, 100)
    )
    assert clean.coverage == pytest.approx(0.1)


def test_masks_of_other_proportions_empty_or_not_png_or_hostile_are_refused() -> None:
    assert _mask_rejected(_mask_png((100, 100), (0, 0, 50, 50))) == RejectionCode.MASK_SIZE
    assert _mask_rejected(_mask_png((200, 100), None)) == RejectionCode.MASK_EMPTY
    assert _mask_rejected(photos.photo_bytes("obama.jpg", 200), "m.jpg") == RejectionCode.UNSUPPORTED_TYPE
    polyglot = photos.png_with_text(_mask_png((200, 100), (0, 0, 10, 10)), "<script>alert(1)</script>")
    assert _mask_rejected(polyglot) == RejectionCode.POLYGLOT
    assert _mask_rejected(photos.decompression_bomb_png()) == RejectionCode.DECOMPRESSION_BOMB
    assert _mask_rejected(_mask_png((200, 100), (0, 0, 10, 10)), "m.jpg") == RejectionCode.EXTENSION_MISMATCH
