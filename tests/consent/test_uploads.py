"""Reference photo uploads through the action: each hostile file gets its reason, valid ones are stored."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import PermissionDenied
from PIL import ExifTags, Image

from consent import actions, vault
from consent.actions import ConsentActionError, ConsentRequired
from consent.intake import PhotoRejectedError, RejectionCode
from consent.models import Asset, AssetKind
from consent.storage import private_storage, walk
from tests.fixtures.consent import NamedBytes

from . import photos

pytestmark = pytest.mark.django_db


def test_one_upload_with_every_kind_of_hostile_file(enrolled_subject, staff, settings, storage_root) -> None:
    settings.LIKENESS_MAX_UPLOAD_BYTES = 500_000
    oversized = photos.original_bytes("obama3.jpg")
    assert len(oversized) > 500_000
    gps_photo = photos.with_gps_exif(photos.photo_bytes("obama3.jpg"))
    batch = [
        NamedBytes(photos.photo_bytes("obama2.jpg"), "good-1.jpg"),
        NamedBytes(photos.decompression_bomb_png(), "bomb.png"),
        NamedBytes(photos.png_html_polyglot(), "polyglot.jpg"),
        NamedBytes(b"", "empty.jpg"),
        NamedBytes(oversized, "huge.jpg"),
        NamedBytes(photos.photo_bytes("two_people.jpg"), "two.jpg"),
        NamedBytes(photos.no_face_jpeg(), "coffee.jpg"),
        NamedBytes(photos.photo_bytes("biden.jpg"), "someone-else.jpg"),
        NamedBytes(gps_photo, "with-gps.jpg"),
    ]
    report = actions.upload_reference_photos(actor=staff, subject=enrolled_subject, uploads=batch)

    assert {rejected.name: rejected.code for rejected in report.rejected} == {
        "bomb.png": RejectionCode.DECOMPRESSION_BOMB,
        "polyglot.jpg": RejectionCode.POLYGLOT,
        "empty.jpg": RejectionCode.EMPTY,
        "huge.jpg": RejectionCode.TOO_LARGE,
        "two.jpg": RejectionCode.MULTIPLE_FACES,
        "coffee.jpg": RejectionCode.NO_FACE,
        "someone-else.jpg": RejectionCode.DIFFERENT_PERSON,
    }
    assert all(rejected.message for rejected in report.rejected)
    assert [asset.label for asset in report.accepted] == ["good-1.jpg", "with-gps.jpg"]

    references = Asset.objects.for_tenant(enrolled_subject.tenant).filter(kind=AssetKind.REFERENCE_PHOTO)
    assert sorted(references.values_list("label", flat=True)) == ["good-1.jpg", "with-gps.jpg"]
    # Each accepted photo has its own embedding, encrypted like the photo.
    for asset in report.accepted:
        embedding = asset.derived.get(kind=AssetKind.FACE_EMBEDDING)
        assert vault.embedding_from_bytes(vault.read_asset(embedding)).shape == (128,)

    # The stored copy of the GPS photo has no EXIF at all, and the storage holds only ciphertext.
    stored = Image.open(io.BytesIO(vault.read_asset(report.accepted[1])))
    assert len(stored.getexif()) == 0
    assert not stored.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    on_disk = (storage_root / report.accepted[1].storage_name).read_bytes()
    assert on_disk.startswith(b"LKNE") and b"JFIF" not in on_disk and b"PhoneMaker" not in on_disk

    # Exactly the enrollment photo, two references and their three embeddings are stored.
    files = walk(private_storage(), f"tenants/{enrolled_subject.tenant_id}")
    stored_names = set(
        Asset.objects.for_tenant(enrolled_subject.tenant)
        .filter(subject=enrolled_subject)
        .values_list("storage_name", flat=True)
    )
    assert len(files) == 6 and set(files) == stored_names


def test_reference_photos_need_an_enrollment_photo_first(make_subject, sign, staff) -> None:
    subject = make_subject()
    sign(subject)
    with pytest.raises(ConsentActionError, match="enrollment photo first"):
        actions.upload_reference_photos(
            actor=staff, subject=subject, uploads=[NamedBytes(photos.photo_bytes("obama2.jpg"), "a.jpg")]
        )


def test_nothing_is_collected_without_consent_in_force(make_subject, staff, storage_root) -> None:
    subject = make_subject()
    with pytest.raises(ConsentRequired, match="no file of them can be stored"):
        actions.set_enrollment_photo(
            actor=staff, subject=subject, upload=NamedBytes(photos.photo_bytes("obama.jpg"), "a.jpg")
        )
    assert not storage_root.exists() or not any(storage_root.rglob("*.lke"))


def test_the_enrollment_photo_itself_must_show_one_face(make_subject, sign, staff) -> None:
    subject = make_subject()
    sign(subject)
    with pytest.raises(PhotoRejectedError) as rejected:
        actions.set_enrollment_photo(
            actor=staff, subject=subject, upload=NamedBytes(photos.photo_bytes("two_people.jpg"), "t.jpg")
        )
    assert rejected.value.code == RejectionCode.MULTIPLE_FACES
    subject.refresh_from_db()
    assert subject.enrollment_photo is None


def test_enrollment_photo_is_set_once(enrolled_subject, staff) -> None:
    with pytest.raises(ConsentActionError, match="already has an enrollment photo"):
        actions.set_enrollment_photo(
            actor=staff, subject=enrolled_subject, upload=NamedBytes(photos.photo_bytes("biden.jpg"), "b.jpg")
        )


def test_legal_reviewers_cannot_upload(enrolled_subject, legal) -> None:
    with pytest.raises(PermissionDenied):
        actions.upload_reference_photos(
            actor=legal,
            subject=enrolled_subject,
            uploads=[NamedBytes(photos.photo_bytes("obama2.jpg"), "a.jpg")],
        )
