"""Generation and edit jobs on a trained tiny model, queued through the actions and run in this process by
the job runner: outputs and their scores, uploads, consent per purpose, cancel, erasure, the kept pipeline."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from PIL import Image

from audit.models import AuditEntry
from consent import actions as consent_actions
from consent import vault
from consent.models import Asset, AssetKind
from editing import actions
from editing.models import EditJob, GenerationJob, Output, OutputKind, OutputStatus
from tests.consent import photos
from tests.fixtures.consent import NamedBytes
from training.jobs import JobError, cancel_job
from training.jobs.dispatch import dispatch_jobs
from training.jobs.runner import run_job
from training.models import JobStatus

pytestmark = pytest.mark.django_db


def _outputs(job):
    return Output.objects.for_tenant(job.tenant).filter(job=job).order_by("id")


def _image(asset: Asset) -> Image.Image:
    return Image.open(io.BytesIO(vault.read_asset(asset)))


def _mask_png(size: tuple[int, int], box: tuple[int, int, int, int]) -> bytes:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


# --- generation ---------------------------------------------------------------------------------------------
def test_a_generation_makes_its_images_pending_review_with_their_scores(model, staff, run_in_process):
    job = actions.queue_generation(
        actor=staff,
        identity_model=model,
        prompt="a photo of {identity} {class_word} on a beach",
        preset="quick",
        count=2,
        seed=7,
        steps=3,
    )
    assert (job.kind, job.status, job.width, job.height) == ("generation", JobStatus.QUEUED, 64, 64)
    # The core's quick preset, its steps overridden.
    assert (job.preset, job.scheduler, job.steps, job.guidance, job.hires) == (
        "quick",
        "dpm++2m",
        3,
        7.5,
        None,
    )
    job = run_in_process(job)
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    # Sampling steps (the scheduler may add one) and one step per image scored.
    assert job.step == job.total_steps >= 3 + 2 and job.device == "cpu"
    first, second = _outputs(job)
    for output, seed in ((first, 7), (second, 8)):
        assert output.status == OutputStatus.PENDING_REVIEW and output.kind == OutputKind.GENERATION
        assert output.seed == seed and output.subject_id == model.subject_id
        assert output.prompt == "a photo of <sks> person on a beach"
        assert output.parameters["steps"] == 3 and output.parameters["index"] == seed - 7
        assert output.parameters["scheduler"] == "dpm++2m" and output.parameters["preset"] == "quick"
        # The tiny random model draws no face: said so, not dressed up as a distance.
        assert output.identity_outcome == "no_face" and output.identity_distance is None
        assert output.scores["identity"]["references"] == 1
        assert output.image is not None and output.image.kind == AssetKind.OUTPUT
        assert _image(output.image).size == (64, 64)
    entry = AuditEntry.objects.for_tenant(job.tenant).get(action="outputs.created")
    assert entry.payload["output_ids"] == [first.pk, second.pk]
    entries = AuditEntry.objects.for_tenant(job.tenant)
    trail = entries.filter(target_type="training.job", target_id=str(job.pk))
    assert list(trail.values_list("action", flat=True)) == [
        "job.queued",
        "job.started",
        "outputs.created",
        "job.succeeded",
    ]


def test_the_second_job_of_a_model_in_a_worker_process_reuses_its_loaded_pipeline(
    model, staff, run_in_process
):
    jobs = [
        run_in_process(
            actions.queue_generation(actor=staff, identity_model=model, prompt_preset="portrait", steps=2)
        )
        for _ in range(2)
    ]
    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * 2
    second = GenerationJob.objects.for_tenant(model.tenant).get(pk=jobs[1].pk)
    assert second.pipeline_reused is True


def test_a_model_whose_base_this_worker_lacks_fails_with_a_reason_that_names_no_server_path(
    model, staff, run_in_process
):
    model.base_model = "/srv/models/sd15-gone"
    model.save(update_fields=["base_model"])
    job = actions.queue_generation(actor=staff, identity_model=model, prompt_preset="portrait")
    job = run_in_process(job)
    assert job.status == JobStatus.FAILED and job.error_code == "model_unusable"
    assert f"job {job.pk}" in job.error_message and "/srv" not in job.error_message
    assert not _outputs(job).exists()


# --- edit ---------------------------------------------------------------------------------------------------
def test_an_edit_of_the_enrollment_photo_keeps_it_outside_the_region_and_reports_how_well(
    model, staff, run_in_process
):
    subject = model.subject
    job = actions.queue_edit(
        actor=staff, identity_model=model, source_photo=subject.enrollment_photo, preset="smile", steps=3
    )
    job = run_in_process(job)
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    (output,) = _outputs(job)
    assert output.kind == OutputKind.EDIT and output.status == OutputStatus.PENDING_REVIEW
    # No source prompt asked for: the worker captioned the photo (Obama smiling broadly, facing the camera),
    # so the smile is described, not left to the identifier; the preset replaces that clause.
    caption = (
        "a photo of <sks> person, facing the camera, eyes open, looking at the camera, smiling with teeth"
    )
    assert job.source_prompt == ""
    assert output.parameters["source_prompt"] == caption
    assert output.parameters["source_prompt_from"] == "photo caption"
    assert output.prompt == caption and output.seed is None
    assert output.source_photo_id == subject.enrollment_photo_id
    photo, edited = _image(subject.enrollment_photo).convert("RGB"), _image(output.image).convert("RGB")
    region = np.asarray(_image(output.region_mask)) > 0
    assert edited.size == photo.size == region.shape[::-1]
    outside = ~region
    assert (np.asarray(photo)[outside] == np.asarray(edited)[outside]).all()
    left, top, right, bottom = output.parameters["crop"]
    assert region[top:bottom, left:right].sum() == region.sum() and output.parameters["crop_scale"] > 0
    background = output.scores["background"]
    assert background["available"] and background["outside_pixels"] == int(outside.sum())
    assert output.background_ssim == pytest.approx(background["ssim"])
    assert output.subject_mask is not None and output.target_mask is not None
    assert output.identity_outcome in {"match", "mismatch", "no_face"}


def test_an_uploaded_photo_and_painted_mask_are_checked_stored_and_bound_the_edit(
    model, staff, run_in_process
):
    upload = photos.photo_bytes("obama2.jpg", 800)
    size = Image.open(io.BytesIO(upload)).size
    box = (0, 0, size[0] // 2, size[1])
    job = actions.queue_edit(
        actor=staff,
        identity_model=model,
        source_upload=NamedBytes(upload, "holiday.jpg"),
        mask_upload=NamedBytes(_mask_png(size, box), "mask.png"),
        mask_mode="replace",
        target_prompt="a photo of {identity} {class_word} with eyes closed",
        steps=3,
    )
    assert job.source_photo is not None and job.user_mask is not None
    assert job.source_photo.kind == AssetKind.SOURCE_PHOTO and job.source_photo.label == "holiday.jpg"
    assert job.user_mask.kind == AssetKind.MASK and job.user_mask.source_id == job.source_photo_id
    job = run_in_process(job)
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    (output,) = _outputs(job)
    # The painted mask replaced the automatic one: nothing right of it changed.
    assert output.subject_mask is None and output.target_mask is None
    region = np.asarray(_image(output.region_mask)) > 0
    assert region.any() and not region[:, size[0] // 2 :].any()
    assert output.parameters["user_mask"] == job.user_mask_id


def test_a_photo_of_another_person_is_refused_and_nothing_is_stored(model, staff):
    with pytest.raises(JobError) as refused:
        actions.queue_edit(
            actor=staff,
            identity_model=model,
            source_upload=NamedBytes(photos.photo_bytes("biden.jpg"), "b.jpg"),
            preset="smile",
        )
    assert refused.value.code == "different_person"
    subject = model.subject
    assert not subject.assets.filter(kind=AssetKind.SOURCE_PHOTO).exists()
    assert not EditJob.objects.for_tenant(subject.tenant).exists()


def test_a_photo_of_another_subject_cannot_be_edited(model, staff, make_subject, sign):
    other = make_subject("Someone Else")
    sign(other)
    consent_actions.set_enrollment_photo(
        actor=staff, subject=other, upload=NamedBytes(photos.photo_bytes("biden.jpg"), "b.jpg")
    )
    other.refresh_from_db()
    with pytest.raises(JobError) as refused:
        actions.queue_edit(
            actor=staff, identity_model=model, source_photo=other.enrollment_photo, preset="smile"
        )
    assert refused.value.code == "wrong_subject"
    embedding = model.subject.assets.filter(kind=AssetKind.FACE_EMBEDDING).first()
    with pytest.raises(JobError) as not_a_photo:
        actions.queue_edit(actor=staff, identity_model=model, source_photo=embedding, preset="smile")
    assert not_a_photo.value.code == "not_a_photo"


def test_a_mask_painted_for_another_picture_is_refused_before_anything_is_stored(model, staff):
    with pytest.raises(JobError) as refused:
        actions.queue_edit(
            actor=staff,
            identity_model=model,
            source_upload=NamedBytes(photos.photo_bytes("obama2.jpg", 800), "a.jpg"),
            mask_upload=NamedBytes(_mask_png((50, 50), (0, 0, 10, 10)), "mask.png"),
            preset="smile",
        )
    assert refused.value.code == "mask_size"
    assert not model.subject.assets.filter(kind__in=[AssetKind.SOURCE_PHOTO, AssetKind.MASK]).exists()


# --- what may be asked ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        ({"prompt_preset": "portrait", "count": 9}, "count must be an integer from 1 to 8, got 9"),
        ({"prompt_preset": "portrait", "count": 0}, "count must be an integer from 1 to 8, got 0"),
        (
            {"prompt_preset": "portrait", "width": 256},
            "width must be an integer from 64 to 128, a multiple of 8",
        ),
        (
            {"prompt_preset": "portrait", "height": 100},
            "height must be an integer from 64 to 128, a multiple",
        ),
        ({"prompt_preset": "portrait", "steps": 151}, "steps must be an integer from 1 to 150, got 151"),
        ({"prompt_preset": "portrait", "seed": -1}, "seed must be an integer from 0 to 4294967295, got -1"),
        ({"prompt_preset": "portrait", "preset": "fast"}, "preset must be one of quick, standard, max"),
        ({"prompt_preset": "portrait", "scheduler": "magic"}, "scheduler must be one of default, ddim"),
        ({"prompt_preset": "portrait", "guidance": True}, "guidance must be a number from 0 to 30"),
        ({"prompt": "a photo of {someone}"}, "names {someone}, which this model does not have"),
        ({"prompt": "a photo of {identity}", "style": True}, "no style token"),
        ({"prompt": "x {identity}", "prompt_preset": "portrait"}, "not both"),
        ({"prompt_preset": "selfie"}, "prompt_preset must be one of portrait, headshot"),
        ({}, "Give a prompt"),
    ],
)
def test_a_generation_the_model_cannot_run_is_refused_with_the_reason(model, staff, request_, fragment):
    with pytest.raises(JobError, match=fragment) as refused:
        actions.queue_generation(actor=staff, identity_model=model, **request_)
    assert refused.value.code == "invalid_parameters"


def test_without_a_preset_or_seed_a_generation_is_standard_with_a_seed_kept_to_repeat_it(model, staff):
    job = actions.queue_generation(actor=staff, identity_model=model, prompt_preset="portrait")
    assert (job.preset, job.steps, job.scheduler, job.count) == ("standard", 50, "default", 1)
    assert 0 <= job.seed < 2**32
    # max adds SD 1.5's second pass (the tiny model is an SD 1.5 layout).
    best = actions.queue_generation(actor=staff, identity_model=model, prompt_preset="portrait", preset="max")
    assert best.hires == {"scale": 2.0, "strength": 0.4, "mode": "latent"}


def test_a_style_is_written_into_the_prompt_of_a_model_that_has_one(model, staff, make_identity_model):
    manifest = {**model.manifest, "tokens": {"identity": "<sks>", "style": "<style1>"}}
    styled = make_identity_model(model.subject, manifest=manifest)
    job = actions.queue_generation(actor=staff, identity_model=styled, prompt_preset="headshot", style=True)
    assert (
        job.style
        and job.prompt
        == "a professional headshot of {identity} {class_word}, studio lighting, plain background"
    )


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        ({"preset": "smile", "target_prompt": "a photo of {identity}"}, "one of them"),
        ({}, "one of them"),
        ({"preset": "yawn"}, "preset must be one of eyes-closed"),
        ({"target_prompt": "a photo of a person smiling"}, "target_prompt must name the subject"),
        ({"preset": "smile", "source_prompt": "a photo"}, "source_prompt must name the subject"),
        ({"preset": "smile", "mask_mode": "invert"}, "mask_mode must be one of"),
    ],
)
def test_an_edit_the_model_cannot_run_is_refused_with_the_reason(model, staff, request_, fragment):
    with pytest.raises(JobError, match=fragment):
        actions.queue_edit(
            actor=staff, identity_model=model, source_photo=model.subject.enrollment_photo, **request_
        )


def test_an_erased_model_version_cannot_be_used_and_reviewers_cannot_queue(model, staff, legal):
    with pytest.raises(PermissionDenied):
        actions.queue_generation(actor=legal, identity_model=model, prompt_preset="portrait")
    with pytest.raises(PermissionDenied):
        actions.queue_edit(
            actor=legal, identity_model=model, source_photo=model.subject.enrollment_photo, preset="smile"
        )
    model.artifact = None
    with pytest.raises(JobError) as refused:
        actions.queue_generation(actor=staff, identity_model=model, prompt_preset="portrait")
    assert refused.value.code == "model_erased"


# --- consent per purpose ------------------------------------------------------------------------------
def test_each_kind_needs_its_own_purpose(make_subject, sign, staff, make_identity_model):
    subject = make_subject()
    sign(subject, ["train_identity", "generate_images"])
    consent_actions.set_enrollment_photo(
        actor=staff, subject=subject, upload=NamedBytes(photos.photo_bytes("obama.jpg"), "a.jpg")
    )
    subject.refresh_from_db()
    model = make_identity_model(subject)
    actions.queue_generation(actor=staff, identity_model=model, prompt_preset="portrait")
    with pytest.raises(
        consent_actions.ConsentRequiredError, match="has not consented to editing existing photos"
    ):
        actions.queue_edit(
            actor=staff, identity_model=model, source_photo=subject.enrollment_photo, preset="smile"
        )
    # Nor is a new photo of them kept for an edit they did not agree to.
    with pytest.raises(consent_actions.ConsentRequiredError):
        actions.queue_edit(
            actor=staff,
            identity_model=model,
            source_upload=NamedBytes(photos.photo_bytes("obama2.jpg"), "b.jpg"),
            preset="smile",
        )
    assert not subject.assets.filter(kind=AssetKind.SOURCE_PHOTO).exists()

    editing_only = make_subject("Edit Only")
    sign(editing_only, ["train_identity", "edit_photos"])
    with pytest.raises(consent_actions.ConsentRequiredError, match="generating new images"):
        actions.queue_generation(
            actor=staff, identity_model=make_identity_model(editing_only), prompt_preset="portrait"
        )


def test_an_edit_whose_consent_lapsed_before_it_started_fails_with_the_reason_and_writes_nothing(
    make_subject, sign, staff, make_identity_model, run_in_process
):
    subject = make_subject()
    editing = sign(subject, ["edit_photos"])
    sign(subject, ["train_identity", "generate_images"])  # keeps the subject's data: only editing lapses
    consent_actions.set_enrollment_photo(
        actor=staff, subject=subject, upload=NamedBytes(photos.photo_bytes("obama.jpg"), "a.jpg")
    )
    subject.refresh_from_db()
    job = actions.queue_edit(
        actor=staff,
        identity_model=make_identity_model(subject),
        source_photo=subject.enrollment_photo,
        preset="smile",
    )
    consent_actions.record_revocation(
        actor=staff, record=editing, reason="E-mail from the subject", received_via="email"
    )
    job = run_in_process(job)
    assert job.status == JobStatus.FAILED and job.error_code == "consent_revoked"
    assert "revoked their consent to editing existing photos" in job.error_message
    assert not _outputs(job).exists()
    assert not subject.assets.filter(kind__in=[AssetKind.OUTPUT, AssetKind.MASK]).exists()


# --- cancel, erasure -----------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_generation_cancelled_mid_run_stops_within_a_step_and_leaves_no_output(settings, model, staff):
    job = actions.queue_generation(actor=staff, identity_model=model, prompt_preset="portrait", steps=150)
    dispatch_jobs()
    job.refresh_from_db()

    def work() -> None:
        try:
            run_job(job.pk, str(job.dispatch_token), host="thread")
        finally:
            connection.close()  # the thread's own connection, or the test database cannot be dropped

    worker = threading.Thread(target=work)
    worker.start()
    jobs = GenerationJob.objects.for_tenant(model.tenant)
    deadline = time.monotonic() + 120
    while jobs.get(pk=job.pk).step < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    cancel_job(actor=staff, job=job, reason="Wrong prompt")
    worker.join(timeout=120)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.error_message == "Wrong prompt"
    assert 3 <= job.step < 150
    assert not _outputs(job).exists()
    assert (
        not Asset.objects.for_tenant(job.tenant).filter(kind__in=[AssetKind.OUTPUT, AssetKind.MASK]).exists()
    )
    assert not (settings.LIKENESS_SCRATCH_ROOT / f"job-{job.pk}").exists()


def test_erasure_withdraws_the_subjects_outputs_and_destroys_their_images(
    model, staff, run_in_process, link_tokens
):
    job = run_in_process(
        actions.queue_generation(actor=staff, identity_model=model, prompt_preset="portrait", steps=2)
    )
    (output,) = _outputs(job)
    for record in model.subject.records.all():
        consent_actions.revoke_via_link(token=link_tokens[record.pk])
    certificate = model.subject.deletion_certificates.get()
    consent_actions.complete_erasure(certificate.pk)
    output.refresh_from_db()
    assert output.status == OutputStatus.WITHDRAWN and output.image_id is None
    certificate.refresh_from_db()
    assert certificate.withdrawn_outputs == [f"editing.outputs:{output.pk}"]
    assert certificate.destroyed_counts.get(AssetKind.OUTPUT) == 1
    # Idempotent: an interrupted erasure runs the hook again and it finds nothing left to withdraw.
    assert actions.withdraw_outputs(model.subject) == []
