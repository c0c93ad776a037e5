"""Generation and edit jobs and outputs over the API: queueing with reasons, consent conflicts, uploads,
who may see what (another tenant, a legal reviewer), and the image download."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from consent import actions as consent_actions
from consent.models import AssetKind
from editing.models import EditJob, GenerationJob, OutputStatus
from tenancy.models import Role
from tests.consent import photos
from tests.fixtures.consent import NamedBytes

pytestmark = pytest.mark.django_db


def _generate(client, identity_model, **extra):
    body = {
        "model": identity_model.pk,
        "prompt": "a photo of {identity} {class_word}",
        "count": 1,
        "seed": 3,
        "steps": 2,
    }
    return client.post("/api/v1/generation-jobs/", {**body, **extra}, format="json")


def test_a_generation_is_queued_read_and_cancelled(model, staff, api_client_for):
    client = api_client_for(staff, model.tenant)
    created = _generate(client, model, count=2)
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "queued" and body["kind"] == "generation" and body["model"] == model.pk
    assert (body["count"], body["seed"], body["width"], body["height"]) == (2, 3, 64, 64)
    assert body["outputs"] == [] and body["pipeline_reused"] is None
    read = client.get(f"/api/v1/generation-jobs/{body['id']}/").json()
    assert read["prompt"] == "a photo of {identity} {class_word}" and read["subject"] == model.subject_id
    assert client.get("/api/v1/jobs/").json()["results"][0]["id"] == body["id"]
    cancelled = client.post(f"/api/v1/generation-jobs/{body['id']}/cancel/", {}, format="json")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_a_request_the_model_cannot_run_gets_a_400_with_the_reason(model, staff, api_client_for):
    client = api_client_for(staff, model.tenant)
    too_many = _generate(client, model, count=12)
    assert too_many.status_code == 400
    assert too_many.json() == {
        "detail": "count must be an integer from 1 to 8, got 12.",
        "code": "invalid_parameters",
    }
    unknown = _generate(client, model, prompt="a photo of {celebrity}")
    assert unknown.status_code == 400 and "{celebrity}" in unknown.json()["detail"]
    assert _generate(client, model, model=2_000_000_000).status_code == 400
    assert not GenerationJob.objects.for_tenant(model.tenant).exists()


def test_consent_that_does_not_cover_the_purpose_is_a_409(
    make_subject, sign, staff, make_identity_model, api_client_for
):
    subject = make_subject()
    sign(subject, ["train_identity", "edit_photos"])
    model = make_identity_model(subject)
    refused = _generate(api_client_for(staff, subject.tenant), model)
    assert refused.status_code == 409
    assert refused.json()["reason"] == "missing" and "generating new images" in refused.json()["detail"]


def test_an_edit_from_a_stored_photo_or_an_upload_with_a_mask(model, staff, api_client_for):
    client = api_client_for(staff, model.tenant)
    subject = model.subject
    stored = client.post(
        "/api/v1/edit-jobs/",
        {"model": model.pk, "source_photo": subject.enrollment_photo_id, "preset": "smile", "steps": 2},
        format="json",
    )
    assert stored.status_code == 201, stored.content
    assert stored.json()["source_photo"] == subject.enrollment_photo_id and stored.json()["user_mask"] is None

    upload = photos.photo_bytes("obama2.jpg", 800)
    size = Image.open(io.BytesIO(upload)).size
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 3, size[1]))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    uploaded = client.post(
        "/api/v1/edit-jobs/",
        {
            "model": model.pk,
            "source_upload": NamedBytes(upload, "holiday.jpg"),
            "mask_upload": NamedBytes(buffer.getvalue(), "mask.png"),
            "mask_mode": "replace",
            "target_prompt": "a photo of {identity} {class_word} looking to the left",
        },
        format="multipart",
    )
    assert uploaded.status_code == 201, uploaded.content
    job = EditJob.objects.for_tenant(model.tenant).get(pk=uploaded.json()["id"])
    assert job.source_photo is not None and job.source_photo.kind == AssetKind.SOURCE_PHOTO
    assert job.user_mask is not None and job.user_mask.kind == AssetKind.MASK
    assert uploaded.json()["mask_mode"] == "replace" and "source_upload" not in uploaded.json()

    not_a_face = client.post(
        "/api/v1/edit-jobs/",
        {
            "model": model.pk,
            "source_upload": NamedBytes(photos.no_face_jpeg(), "coffee.jpg"),
            "preset": "smile",
        },
        format="multipart",
    )
    assert not_a_face.status_code == 400 and not_a_face.json()["code"] == "no_face"


def test_a_photo_of_another_tenant_does_not_exist_here(model, staff, api_client_for, tenant_factory):
    from tests.consent.isolation_factories import make_asset

    foreign = make_asset(tenant_factory())
    refused = api_client_for(staff, model.tenant).post(
        "/api/v1/edit-jobs/",
        {"model": model.pk, "source_photo": foreign.pk, "preset": "smile"},
        format="json",
    )
    assert refused.status_code == 400 and "source_photo" in refused.json()
    assert not EditJob.objects.for_tenant(model.tenant).exists()


def test_outputs_are_listed_filtered_and_downloaded_by_staff(made, staff, api_client_for):
    client = api_client_for(staff, made.tenant)
    listing = client.get(
        f"/api/v1/outputs/?job={made.job_id}&status=pending_review&subject={made.subject_id}"
    )
    assert listing.status_code == 200
    (row,) = listing.json()["results"]
    assert row["id"] == made.pk and row["status"] == "pending_review" and row["kind"] == "generation"
    assert row["identity_outcome"] == "no_face" and row["scores"]["identity"]["outcome"] == "no_face"
    assert row["download"] == f"/api/v1/outputs/{made.pk}/download/"
    assert client.get("/api/v1/outputs/?status=approved").json()["results"] == []
    assert client.get(f"/api/v1/outputs/?job={made.job_id + 1000}").json()["results"] == []
    detail = client.get(f"/api/v1/outputs/{made.pk}/").json()
    assert detail["prompt"] == "a photo of <sks> person" and detail["parameters"]["steps"] == 2
    image = client.get(row["download"])
    # The review preview, inline: the clean image leaves only through a release (consent.previews).
    assert image.status_code == 200 and image["Content-Type"] == "image/jpeg"
    assert image["Cache-Control"] == "private, no-store" and image["Content-Disposition"].startswith(
        "inline;"
    )
    assert Image.open(io.BytesIO(image.content)).size == (512, 512)
    job = client.get(f"/api/v1/generation-jobs/{made.job_id}/").json()
    assert job["outputs"] == [made.pk] and job["status"] == "succeeded"


def test_legal_reviewers_read_outputs_but_never_see_images_or_queue(made, legal, api_client_for):
    client = api_client_for(legal, made.tenant)
    assert client.get(f"/api/v1/outputs/{made.pk}/").status_code == 200
    assert client.get(f"/api/v1/generation-jobs/{made.job_id}/").status_code == 200
    assert client.get(f"/api/v1/outputs/{made.pk}/download/").status_code == 403
    assert _generate(client, made.identity_model).status_code == 403
    assert client.post(f"/api/v1/generation-jobs/{made.job_id}/cancel/", {}, format="json").status_code == 403


def test_another_tenants_members_cannot_open_the_job_its_outputs_or_images(
    made, tenant_factory, member, api_client_for
):
    other = tenant_factory()
    client = api_client_for(member(other, Role.ADMIN), other)
    for path in (
        f"/api/v1/generation-jobs/{made.job_id}/",
        f"/api/v1/jobs/{made.job_id}/",
        f"/api/v1/outputs/{made.pk}/",
        f"/api/v1/outputs/{made.pk}/download/",
        f"/api/v1/assets/{made.image_id}/download/",
    ):
        assert client.get(path).status_code == 404, path
    assert client.get("/api/v1/outputs/").json()["results"] == []
    assert client.post(f"/api/v1/generation-jobs/{made.job_id}/cancel/", {}, format="json").status_code == 404
    # Nor can they run the model: it does not exist in their tenant.
    assert _generate(client, made.identity_model).status_code == 400


def test_an_erased_outputs_image_is_gone_and_the_row_says_withdrawn(made, staff, api_client_for, link_tokens):
    for record in made.subject.records.all():
        consent_actions.revoke_via_link(token=link_tokens[record.pk])
    consent_actions.complete_erasure(made.subject.deletion_certificates.get().pk)
    client = api_client_for(staff, made.tenant)
    row = client.get(f"/api/v1/outputs/{made.pk}/").json()
    assert row["status"] == OutputStatus.WITHDRAWN and row["image"] is None and row["download"] is None
    gone = client.get(f"/api/v1/outputs/{made.pk}/download/")
    assert gone.status_code == 404 and "erased" in gone.json()["detail"]


def test_the_job_page_follows_a_generation_like_any_job(made, staff, client_for):
    page = client_for(staff, made.tenant).get(f"/jobs/{made.job_id}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f"Generation job #{made.job_id}" in html and "Succeeded" in html
