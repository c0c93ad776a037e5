"""Style sets: a tenant's style photos, versioned by name, outside the consent gate, but never a likeness:
a photo with a face large enough to be one is refused with its reason; hostile files as photos are."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from consent.storage import private_storage, walk
from tests.consent import photos
from tests.fixtures.consent import NamedBytes
from training.actions import StylePhotosRejectedError, create_style_set
from training.actions.styles import LIKENESS_CODE, read_style_photo
from training.models import StylePhoto, StyleSet

pytestmark = pytest.mark.django_db


def _stored(tenant) -> list[str]:
    return walk(private_storage(), f"tenants/{tenant.pk}/styles")


def test_a_photo_without_a_face_is_accepted_and_stored_as_a_new_version(tenant, staff):
    first = create_style_set(
        actor=staff,
        tenant=tenant,
        name="  Warm   studio ",
        uploads=[NamedBytes(photos.no_face_jpeg(), "a.jpg")],
    )
    assert (first.name, first.version) == ("Warm studio", 1)
    (photo,) = first.photos.all()
    assert photo.largest_face_px == 0 and photo.content_type == "image/jpeg"
    assert read_style_photo(photo).startswith(b"\xff\xd8\xff")
    second = create_style_set(
        actor=staff, tenant=tenant, name="Warm studio", uploads=[NamedBytes(photos.no_face_jpeg(), "b.jpg")]
    )
    assert second.version == 2 and len(_stored(tenant)) == 2
    assert AuditEntry.objects.for_tenant(tenant).filter(action="style_set.created").count() == 2


def test_a_photo_with_a_face_large_enough_to_be_a_likeness_is_refused_with_its_reason(tenant, staff):
    uploads = [
        NamedBytes(photos.no_face_jpeg(), "backdrop.jpg"),
        NamedBytes(photos.photo_bytes("obama.jpg"), "portrait.jpg"),
        NamedBytes(photos.png_html_polyglot(), "sneaky.png"),
    ]
    with pytest.raises(StylePhotosRejectedError) as refused:
        create_style_set(actor=staff, tenant=tenant, name="Portraits", uploads=uploads)
    reasons = {photo.name: photo for photo in refused.value.rejected}
    assert set(reasons) == {"portrait.jpg", "sneaky.png"}
    assert reasons["portrait.jpg"].code == LIKENESS_CODE
    assert (
        "likeness" in reasons["portrait.jpg"].message and "pixels across" in reasons["portrait.jpg"].message
    )
    assert reasons["sneaky.png"].code == "polyglot"
    # One refused photo refuses the version: nothing is stored.
    assert not StyleSet.objects.for_tenant(tenant).exists() and _stored(tenant) == []
    entry = AuditEntry.objects.for_tenant(tenant).get(action="style_set.rejected")
    assert entry.payload == {"codes": [LIKENESS_CODE, "polyglot"], "photos": 3}


def test_the_face_rule_is_relative_to_the_photo_too(settings, tenant, staff):
    """A face under LIKENESS_MIN_FACE_PX is still a likeness when it fills a large share of the photo."""
    small_portrait = photos.photo_bytes("obama.jpg", 300)  # the whole photo is 300 px: the face under 100
    settings.LIKENESS_MIN_FACE_PX = 10_000
    settings.LIKENESS_STYLE_MAX_FACE_FRACTION = 0.9
    accepted = create_style_set(
        actor=staff, tenant=tenant, name="Loose", uploads=[NamedBytes(small_portrait, "s.jpg")]
    )
    assert accepted.photos.get().largest_face_px > 0
    settings.LIKENESS_STYLE_MAX_FACE_FRACTION = 0.1
    with pytest.raises(StylePhotosRejectedError):
        create_style_set(
            actor=staff, tenant=tenant, name="Strict", uploads=[NamedBytes(small_portrait, "s.jpg")]
        )


def test_style_sets_over_the_api(tenant, staff, legal, api_client_for):
    client = api_client_for(staff, tenant)
    refused = client.post(
        "/api/v1/style-sets/",
        {"name": "Portraits", "photos": [NamedBytes(photos.photo_bytes("obama2.jpg"), "p.jpg")]},
        format="multipart",
    )
    assert refused.status_code == 400
    body = refused.json()
    assert body["code"] == "style_photos_rejected" and body["rejected"][0]["code"] == LIKENESS_CODE
    created = client.post(
        "/api/v1/style-sets/",
        {"name": "Backdrops", "photos": [NamedBytes(photos.no_face_jpeg(), "a.jpg")]},
        format="multipart",
    )
    assert created.status_code == 201, created.content
    assert created.json()["version"] == 1 and len(created.json()["style_photos"]) == 1
    assert "photos" not in created.json()
    empty = client.post("/api/v1/style-sets/", {"name": "Nothing"}, format="multipart")
    assert empty.status_code == 400
    as_legal = api_client_for(legal, tenant).post(
        "/api/v1/style-sets/", {"name": "X", "photos": [NamedBytes(photos.no_face_jpeg(), "a.jpg")]}
    )
    assert as_legal.status_code == 403
    assert StylePhoto.objects.for_tenant(tenant).count() == 1
