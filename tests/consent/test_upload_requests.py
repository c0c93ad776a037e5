"""Upload requests over HTTP: how many files one request may carry, and where their bytes are held."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import InMemoryUploadedFile, SimpleUploadedFile

pytestmark = pytest.mark.django_db


def _files(count: int) -> list[SimpleUploadedFile]:
    return [
        SimpleUploadedFile(f"photo-{n}.jpg", b"\xff\xd8\xff", content_type="image/jpeg") for n in range(count)
    ]


def test_the_file_count_limit_is_the_upload_limit(settings) -> None:
    """The request-body limit is sized for LIKENESS_MAX_UPLOAD_FILES photos; Django's count must agree."""
    assert settings.DATA_UPLOAD_MAX_NUMBER_FILES == settings.LIKENESS_MAX_UPLOAD_FILES
    assert settings.LIKENESS_MAX_UPLOAD_REQUEST_BYTES >= (
        settings.LIKENESS_MAX_UPLOAD_FILES * settings.LIKENESS_MAX_UPLOAD_BYTES
    )


def test_one_file_too_many_through_the_api_gets_a_json_reason(
    make_subject, staff, tenant, api_client_for, settings
):
    subject = make_subject()
    too_many = settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1
    response = api_client_for(staff, tenant).post(
        f"/api/v1/subjects/{subject.pk}/reference-photos/", {"photos": _files(too_many)}, format="multipart"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    most = settings.DATA_UPLOAD_MAX_NUMBER_FILES
    reason = f"Too many files in one request: at most {most} per upload. Send the others in another upload."
    assert response.json() == {"detail": reason}
    assert not subject.assets.exists()


def test_one_file_too_many_through_the_page_gets_the_reason_on_a_page(
    make_subject, staff, tenant, client_for, settings
):
    subject = make_subject()
    too_many = settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1
    response = client_for(staff, tenant).post(f"/subjects/{subject.pk}/photos/", {"photos": _files(too_many)})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert (
        f"Too many files in one request: at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} per upload." in page
    )
    assert f'href="/subjects/{subject.pk}/photos/"' in page
    assert not subject.assets.exists()


def test_uploaded_photos_are_held_in_memory_never_in_a_temporary_file(rf) -> None:
    """Django's default handlers write files over 2.5 MB to a temporary file: plaintext on a disk."""
    photo = SimpleUploadedFile("large.jpg", b"\xff" * (3 * 1024 * 1024), content_type="image/jpeg")
    request = rf.post("/subjects/1/photos/", {"photos": [photo]})
    [held] = request.FILES.getlist("photos")
    assert isinstance(held, InMemoryUploadedFile)
    assert held.size == 3 * 1024 * 1024
