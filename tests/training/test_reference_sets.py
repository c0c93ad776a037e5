"""Reference sets: built by the core's prepare from a subject's photos, stored as encrypted subject files,
rebuilt when the photos change, captions editable (keeping the token), never changed once a job used them."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.models import AuditEntry
from consent import actions as consent_actions
from consent import vault
from consent.models import Asset, AssetKind
from consent.storage import private_storage
from personalization.dataset import PreparedDataset
from tests.consent import photos
from tests.fixtures.consent import NamedBytes
from training.actions import (
    TrainingActionError,
    build_reference_set,
    change_caption,
    queue_training_job,
    request_reference_set,
)
from training.kind import unpack_reference_set
from training.models import ReferenceSet, ReferenceSetStatus

pytestmark = pytest.mark.django_db


def _actions(reference_set: ReferenceSet) -> list[str]:
    entries = AuditEntry.objects.for_tenant(reference_set.tenant).filter(target_id=str(reference_set.pk))
    return list(entries.filter(target_type="training.referenceset").values_list("action", flat=True))


def test_a_set_is_built_from_the_photos_as_encrypted_crops_and_masks_with_captions_and_quality(
    photographed, built_set, tmp_path
):
    reference_set = built_set(photographed)
    assert reference_set.status == ReferenceSetStatus.READY, reference_set.error_message
    photo_ids = sorted(
        Asset.objects.for_tenant(photographed.tenant)
        .filter(subject=photographed, kind=AssetKind.REFERENCE_PHOTO)
        .values_list("pk", flat=True)
    )
    assert reference_set.photo_ids == photo_ids and len(photo_ids) == 3
    assert (reference_set.resolution, reference_set.token, reference_set.class_word) == (
        64,
        "<sks>",
        "person",
    )
    items = list(reference_set.items.order_by("name"))
    assert [item.name for item in items] == ["0001", "0002", "0003"]
    for item in items:
        assert item.photo_id in photo_ids
        assert "<sks>" in item.caption and item.caption.startswith("a photo of <sks> person")
        assert {"face_size_px", "sharpness", "exposure_mean", "pose"} <= set(item.quality)
        assert isinstance(item.warnings, list)
        for asset, kind in ((item.crop, AssetKind.CROP), (item.face_mask, AssetKind.MASK)):
            assert asset is not None and asset.kind == kind and asset.subject_id == photographed.pk
            assert asset.source_id == item.photo_id
            with private_storage().open(asset.storage_name, "rb") as handle:
                assert handle.read(4) == b"LKNE"  # ciphertext under the subject key, never the PNG
            assert vault.read_asset(asset).startswith(b"\x89PNG")
    # The hash the set records is the core's hash of the folder a training job will read.
    unpack_reference_set(reference_set, tmp_path / "unpacked")
    assert PreparedDataset.load(tmp_path / "unpacked").hash() == reference_set.dataset_hash
    assert _actions(reference_set) == ["reference_set.requested", "reference_set.built"]


def test_the_same_photos_give_the_same_set_and_changed_photos_a_new_version(photographed, built_set, staff):
    first = built_set(photographed)
    again, started = request_reference_set(actor=staff, subject=photographed)
    assert again.pk == first.pk and not started
    consent_actions.upload_reference_photos(
        actor=staff,
        subject=photographed,
        uploads=[NamedBytes(photos.photo_bytes("obama2.jpg", 900), "4.jpg")],
    )
    second, started = request_reference_set(actor=staff, subject=photographed)
    assert started and second.version == 2 and second.status == ReferenceSetStatus.BUILDING
    assert len(second.photo_ids) == 4
    # A second delivery of the build message does nothing once the first one built it.
    assert build_reference_set(second.pk) is not None
    assert build_reference_set(second.pk) is None
    second.refresh_from_db()
    assert second.status == ReferenceSetStatus.READY and second.items.count() == 4


def test_a_subject_without_photos_or_without_training_consent_gets_the_reason(
    make_subject, sign, staff, enrolled_subject
):
    with pytest.raises(TrainingActionError, match="no reference photos"):
        request_reference_set(actor=staff, subject=enrolled_subject)
    subject = make_subject("Generations only")
    sign(subject, ["generate_images"])
    with pytest.raises(consent_actions.ConsentRequiredError, match="training an identity model"):
        request_reference_set(actor=staff, subject=subject)


def test_a_build_whose_consent_lapsed_fails_with_the_reason_and_stores_nothing(
    training_consent_only_lapses, staff
):
    subject, training = training_consent_only_lapses
    requested, _ = request_reference_set(actor=staff, subject=subject)
    consent_actions.record_revocation(actor=staff, record=training, reason="Letter", received_via="post")
    build_reference_set(requested.pk)
    requested.refresh_from_db()
    assert requested.status == ReferenceSetStatus.FAILED
    assert "revoked their consent to training an identity model" in requested.error_message
    assert (
        not Asset.objects.for_tenant(subject.tenant)
        .filter(kind__in=[AssetKind.CROP, AssetKind.MASK])
        .exists()
    )
    assert _actions(requested) == ["reference_set.requested", "reference_set.failed"]


def test_a_caption_keeps_the_token_is_bounded_and_is_edited_in_place_while_unused(
    photographed, built_set, staff
):
    reference_set = built_set(photographed)
    item = reference_set.items.get(name="0001")
    for caption, code in (
        ("a photo of a man, smiling", "caption_token_missing"),
        ("   ", "caption_empty"),
        ("a photo of <sks> person " + "x" * 600, "caption_too_long"),
    ):
        with pytest.raises(TrainingActionError) as refused:
            change_caption(actor=staff, item=item, caption=caption)
        assert refused.value.code == code
    before = reference_set.dataset_hash
    edited = change_caption(actor=staff, item=item, caption="a photo of <sks> person,\n  smiling, outdoors")
    assert edited.pk == item.pk and edited.caption == "a photo of <sks> person, smiling, outdoors"
    reference_set.refresh_from_db()
    assert reference_set.dataset_hash != before and reference_set.items.count() == 3
    entry = AuditEntry.objects.for_tenant(photographed.tenant).get(action="reference_item.caption_changed")
    assert entry.payload["new_version"] is False and "smiling" not in str(entry.payload)


def test_a_set_a_job_used_is_never_changed_in_place(photographed, built_set, staff, tmp_path: Path):
    reference_set = built_set(photographed)
    job = queue_training_job(actor=staff, subject=photographed, method="identity")
    assert job.reference_set_id == reference_set.pk
    item = reference_set.items.get(name="0002")
    pinned_caption, pinned_hash = item.caption, reference_set.dataset_hash

    edited = change_caption(actor=staff, item=item, caption="a photo of <sks> person, laughing")
    new_set = edited.reference_set
    assert new_set.pk != reference_set.pk and new_set.derived_from_id == reference_set.pk
    assert new_set.version == reference_set.version + 1 and new_set.status == ReferenceSetStatus.READY
    # The used set, its captions and its hash are exactly as the job pinned them.
    for row in (item, reference_set, job):
        row.refresh_from_db()
    assert item.caption == pinned_caption and reference_set.dataset_hash == pinned_hash
    assert job.reference_set_id == reference_set.pk
    # The new version shares the files (assets never change) and hashes as the core does.
    assert sorted(new_set.items.values_list("crop_id", flat=True)) == sorted(
        reference_set.items.values_list("crop_id", flat=True)
    )
    unpack_reference_set(new_set, tmp_path / "new")
    assert PreparedDataset.load(tmp_path / "new").hash() == new_set.dataset_hash != pinned_hash
    # Further edits of the new version (no job used it) stay in place.
    again = change_caption(actor=staff, item=edited, caption="a photo of <sks> person, laughing, indoors")
    assert again.reference_set_id == new_set.pk


def test_captions_over_the_api(photographed, built_set, staff, legal, api_client_for):
    reference_set = built_set(photographed)
    item = reference_set.items.get(name="0001")
    client = api_client_for(staff, photographed.tenant)
    url = f"/api/v1/reference-items/{item.pk}/"
    refused = client.patch(url, {"caption": "a photo of a person"}, format="json")
    assert refused.status_code == 400
    assert "<sks>" in refused.json()["detail"] and refused.json()["code"] == "caption_token_missing"
    changed = client.patch(url, {"caption": "a photo of <sks> person, in a hat"}, format="json")
    assert changed.status_code == 200 and changed.json()["caption"] == "a photo of <sks> person, in a hat"
    listing = client.get(f"/api/v1/reference-sets/?subject={photographed.pk}").json()
    assert [row["id"] for row in listing["results"]] == [reference_set.pk]
    assert listing["results"][0]["is_current"] and len(listing["results"][0]["items"]) == 3
    # Legal reviewers read runs and model versions, not the data sets (their crops are the subject's face).
    assert api_client_for(legal, photographed.tenant).patch(url, {"caption": "x <sks>"}).status_code == 404
    assert (
        api_client_for(legal, photographed.tenant)
        .get(f"/api/v1/reference-sets/{reference_set.pk}/")
        .status_code
        == 404
    )


def test_building_over_the_api(photographed, staff, api_client_for):
    client = api_client_for(staff, photographed.tenant)
    started = client.post("/api/v1/reference-sets/", {"subject": photographed.pk}, format="json")
    assert started.status_code == 202 and started.json()["status"] == "building"
    same = client.post("/api/v1/reference-sets/", {"subject": photographed.pk}, format="json")
    assert same.status_code == 200 and same.json()["id"] == started.json()["id"]
    refused = client.post(
        "/api/v1/reference-sets/",
        {"subject": photographed.pk, "base_model": "runwayml/sd-1-5"},
        format="json",
    )
    assert refused.status_code == 400 and refused.json()["code"] == "base_model_not_allowed"


def test_erasing_the_subject_clears_what_the_set_derived_from_their_photos(photographed, built_set, admin):
    reference_set = built_set(photographed)
    certificate = consent_actions.erase_subject(actor=admin, subject=photographed, reason="Request of 1 May")
    assert certificate is not None
    consent_actions.complete_erasure(certificate.pk)
    reference_set.refresh_from_db()
    assert reference_set.status == ReferenceSetStatus.ERASED and reference_set.dataset_hash  # history stays
    for item in reference_set.items.all():
        assert (item.caption, item.entry, item.quality, item.warnings) == ("", {}, {}, [])
        assert item.crop_id is None and item.face_mask_id is None and item.photo_id is None
    completed = AuditEntry.objects.for_tenant(photographed.tenant).get(action="erasure.completed")
    assert completed.payload["forgotten_rows"] == [f"training.reference_sets:{reference_set.pk}"]
