"""Hostile-input checks on single files, without the database (uploads through the action: test_uploads)."""

from __future__ import annotations

import io

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
