"""Stored files are checked against their SHA-256 on every read: a file altered in storage is never served."""

from __future__ import annotations

import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from consent import actions, vault
from consent.models import AssetKind
from tests.fixtures.consent import NamedBytes

from . import photos

pytestmark = pytest.mark.django_db

SECRET_CROP = b"crop pixels only the subject's key opens " * 20


def _store(subject, data: bytes, kind: AssetKind = AssetKind.CROP):
    return actions.store_subject_file(
        subject=subject, kind=kind, data=data, content_type="image/png", extension="png"
    )


@pytest.fixture
def signed_subject(make_subject, sign):
    subject = make_subject()
    sign(subject)
    return subject


def test_a_byte_changed_in_storage_is_refused_with_a_clear_logged_error(
    signed_subject, storage_root, caplog
) -> None:
    asset = _store(signed_subject, SECRET_CROP)
    path = storage_root / asset.storage_name
    stored = bytearray(path.read_bytes())
    stored[len(stored) // 2] ^= 0x01
    path.write_bytes(bytes(stored))

    with (
        caplog.at_level(logging.ERROR, logger="consent.vault"),
        pytest.raises(vault.AssetIntegrityError) as refused,
    ):
        vault.read_asset(asset)

    assert f"#{asset.pk}" in refused.value.message and "checksum" in refused.value.message
    logged = [r for r in caplog.records if r.name == "consent.vault" and r.levelno == logging.ERROR]
    assert len(logged) == 1 and f"asset {asset.pk}" in logged[0].getMessage()
    assert logged[0].exc_info is None  # one line, no traceback
    assert asset.sha256 in logged[0].getMessage()


def test_another_file_of_the_same_subject_swapped_in_is_refused(signed_subject, storage_root) -> None:
    """The swap decrypts fine (same key, authentic envelope): only the checksum tells it apart."""
    crop = _store(signed_subject, SECRET_CROP)
    mask = _store(signed_subject, b"a different file of the same subject", AssetKind.MASK)
    swapped = (storage_root / mask.storage_name).read_bytes()
    assert vault.open_envelope(signed_subject.tenant_id, signed_subject.pk, swapped)  # authentic on its own
    (storage_root / crop.storage_name).write_bytes(swapped)

    with pytest.raises(vault.AssetIntegrityError):
        vault.read_asset(crop)
    assert vault.read_asset(mask) == b"a different file of the same subject"  # the intact one still reads


def test_the_page_and_the_api_refuse_a_damaged_file_without_a_traceback(
    tenant, staff, signed_subject, storage_root, client_for, api_client_for
) -> None:
    asset = _store(signed_subject, SECRET_CROP)
    path = storage_root / asset.storage_name
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")

    page = client_for(staff, tenant).get(reverse("consent-asset-file", args=[asset.pk]))
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")
    assert "failed its integrity check" in page.content.decode()
    assert SECRET_CROP[:20] not in page.content and "Traceback" not in page.content.decode()

    download = api_client_for(staff, tenant).get(f"/api/v1/assets/{asset.pk}/download/")
    assert download.status_code == 500
    assert download.json()["code"] == "asset_integrity"
    assert "failed its integrity check" in download.json()["detail"]


def test_a_damaged_enrollment_embedding_stops_the_upload_with_its_reason(
    tenant, staff, enrolled_subject, storage_root, api_client_for
) -> None:
    embedding = enrolled_subject.enrollment_photo.derived.get(kind=AssetKind.FACE_EMBEDDING)
    path = storage_root / embedding.storage_name
    path.write_bytes(b"\x00" + path.read_bytes()[1:])

    with pytest.raises(vault.AssetIntegrityError):
        actions.upload_reference_photos(
            actor=staff,
            subject=enrolled_subject,
            uploads=[NamedBytes(photos.photo_bytes("obama2.jpg"), "r.jpg")],
        )
    response = api_client_for(staff, tenant).post(
        f"/api/v1/subjects/{enrolled_subject.pk}/reference-photos/",
        {"photos": [SimpleUploadedFile("r.jpg", photos.photo_bytes("obama2.jpg"), "image/jpeg")]},
        format="multipart",
    )
    assert response.status_code == 500 and response.json()["code"] == "asset_integrity"
    assert not enrolled_subject.assets.filter(kind=AssetKind.REFERENCE_PHOTO).exists()
