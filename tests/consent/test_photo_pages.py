"""Photos on the dashboard: named by their uploaded file, deleted one by one, downloaded with a real name."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from audit.models import AuditEntry
from consent import actions
from consent.models import Asset, AssetKind
from consent.storage import private_storage
from tests.fixtures.consent import NamedBytes

from . import photos

pytestmark = pytest.mark.django_db(transaction=True)  # files leave the storage when the deletion commits


@pytest.fixture
def reference(enrolled_subject, staff) -> Asset:
    report = actions.upload_reference_photos(
        actor=staff,
        subject=enrolled_subject,
        uploads=[NamedBytes(photos.photo_bytes("obama2.jpg"), "Séance studio, day 1.JPG")],
    )
    assert len(report.accepted) == 1, report.rejected
    return report.accepted[0]


def _embedding_of(photo: Asset) -> Asset:
    return Asset.objects.for_tenant(photo.tenant).get(source=photo, kind=AssetKind.FACE_EMBEDDING)


def test_staff_delete_a_reference_photo_and_its_face_embedding_from_the_photos_page(
    tenant, staff, enrolled_subject, reference, client_for
) -> None:
    embedding = _embedding_of(reference)
    stored = [reference.storage_name, embedding.storage_name]
    client = client_for(staff, tenant)
    photos_page = client.get(reverse("consent-subject-photos", args=[enrolled_subject.pk])).content.decode()
    assert "Séance studio, day 1.JPG" in photos_page and f"#{reference.pk}<" not in photos_page
    url = reverse("consent-photo-delete", args=[reference.pk])
    assert url in photos_page
    confirm = client.get(url).content.decode()
    assert "Séance studio, day 1.JPG" in confirm and "face measurements" in confirm
    assert Asset.objects.for_tenant(tenant).filter(pk=reference.pk).exists()  # GET only asks

    response = client.post(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("consent-subject-photos", args=[enrolled_subject.pk])
    assert not Asset.objects.for_tenant(tenant).filter(pk__in=[reference.pk, embedding.pk]).exists()
    assert not any(private_storage().exists(name) for name in stored)
    entry = AuditEntry.objects.for_tenant(tenant).filter(action="photo.deleted").get()
    assert entry.actor == staff
    assert entry.payload == {
        "subject_id": enrolled_subject.pk,
        "asset_id": reference.pk,
        "kind": "reference_photo",
        "deleted_asset_ids": [embedding.pk, reference.pk],
    }


def test_the_enrollment_photo_stays_while_reference_photos_depend_on_it(
    tenant, staff, enrolled_subject, reference, client_for
) -> None:
    enrollment = enrolled_subject.enrollment_photo
    client = client_for(staff, tenant)
    refused = client.post(reverse("consent-photo-delete", args=[enrollment.pk]))
    assert refused.status_code == 400
    assert "cannot be deleted while 1 reference photo were checked against it" in refused.content.decode()
    assert Asset.objects.for_tenant(tenant).filter(pk=enrollment.pk).exists()

    actions.delete_photo(actor=staff, photo=reference)
    actions.delete_photo(actor=staff, photo=enrollment)
    enrolled_subject.refresh_from_db()
    assert enrolled_subject.enrollment_photo is None
    assert not enrolled_subject.assets.exists()  # both photos and both embeddings


def test_only_members_who_may_upload_delete_photos_and_only_photos(
    tenant, legal, staff, enrolled_subject, reference, client_for
) -> None:
    with pytest.raises(PermissionDenied):
        actions.delete_photo(actor=legal, photo=reference)
    assert (
        client_for(legal, tenant).post(reverse("consent-photo-delete", args=[reference.pk])).status_code
        == 403
    )
    embedding = _embedding_of(reference)
    with pytest.raises(actions.ConsentActionError, match="Only uploaded photos"):
        actions.delete_photo(actor=staff, photo=embedding)
    # The route knows photos only: another kind of file is not found there.
    assert (
        client_for(staff, tenant).get(reverse("consent-photo-delete", args=[embedding.pk])).status_code == 404
    )
    assert Asset.objects.for_tenant(tenant).filter(pk__in=[reference.pk, embedding.pk]).count() == 2


def test_downloads_are_named_after_the_uploaded_file_with_the_stored_types_extension(
    tenant, staff, enrolled_subject, reference, client_for
) -> None:
    client = client_for(staff, tenant)
    response = client.get(reverse("consent-asset-file", args=[reference.pk]))
    assert response["Content-Disposition"] == f'inline; filename="seance-studio-day-1-{reference.pk}.jpg"'
    hostile = actions.upload_reference_photos(
        actor=staff,
        subject=enrolled_subject,
        uploads=[
            NamedBytes(photos.as_format(photos.photo_bytes("obama3.jpg"), "PNG"), 'x"\r\nSet-Cookie: a=b.png')
        ],
    ).accepted[0]
    disposition = client.get(reverse("consent-asset-file", args=[hostile.pk]))["Content-Disposition"]
    assert disposition == f'inline; filename="x-set-cookie-ab-{hostile.pk}.png"'
    enrollment = enrolled_subject.enrollment_photo
    enrollment.label = ""  # a photo stored without a name is named by its kind
    enrollment.save(update_fields=["label"])
    unnamed = client.get(reverse("consent-asset-file", args=[enrollment.pk]))["Content-Disposition"]
    assert unnamed == f'inline; filename="enrollment_photo-{enrollment.pk}.jpg"'
