"""Training jobs run in-process on the tiny model (the real worker runs them in test_training_processes.py):
queueing and its refusals, the run (progress, previews, evaluation, the registered version), consent lapsing
before the start, a base model that cannot load, and the registry's activation and permissions."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import PermissionDenied
from guardian.shortcuts import assign_perm

from audit.models import AuditEntry
from consent import actions as consent_actions
from consent.models import Asset, AssetKind
from tests.consent import photos
from tests.fixtures.consent import NamedBytes
from training.actions import (
    TrainingActionError,
    activate_identity_model,
    create_identity_model,
    create_style_set,
    queue_training_job,
    request_reference_set,
)
from training.jobs import JobError
from training.jobs.dispatch import dispatch_jobs
from training.jobs.pipelines import pipeline_cache
from training.jobs.runner import run_job
from training.models import IdentityModel, JobPreview, JobStatus, ReferenceSetStatus, TrainingJob

pytestmark = pytest.mark.django_db
FEW_STEPS = {"steps": 4, "preview_every": 2}


def _run(job: TrainingJob) -> TrainingJob:
    """Hand the job over as the dispatcher does and run it here, as a worker would."""
    dispatch_jobs()
    job.refresh_from_db()
    assert job.dispatch_token is not None
    run_job(job.pk, str(job.dispatch_token), host="test-host")
    job.refresh_from_db()
    return job


def _files(subject, *kinds: AssetKind) -> list[Asset]:
    return list(Asset.objects.for_tenant(subject.tenant).filter(subject=subject, kind__in=kinds))


def test_an_identity_job_trains_reports_evaluates_and_registers_the_first_version_active(
    photographed, built_set, staff
):
    reference_set = built_set(photographed)
    job = _run(queue_training_job(actor=staff, subject=photographed, method="identity", overrides=FEW_STEPS))
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert (job.step, job.total_steps, job.steps_done) == (4, 4, 4) and job.phase == "evaluating"
    assert job.device == "cpu" and [point[0] for point in job.loss_history] == [1, 2, 3, 4]
    assert job.resolved_settings["steps"] == 4 and job.resolved_settings["checkpoint_every"] == 0
    previews = JobPreview.objects.for_tenant(job.tenant).filter(job=job).order_by("step")
    assert [preview.step for preview in previews] == [2, 4]
    assert all(preview.asset is not None and preview.asset.kind == AssetKind.PREVIEW for preview in previews)

    model = IdentityModel.objects.for_tenant(job.tenant).get(job=job)
    assert (model.version, model.is_active, model.method, model.model_kind) == (1, True, "identity", "sd15")
    assert model.artifact is not None and model.artifact.kind == AssetKind.ADAPTER
    assert model.artifact.subject_id == photographed.pk
    assert model.manifest["dataset_hash"] == reference_set.dataset_hash and model.manifest["steps"] == 4
    evaluation = model.evaluation
    # The tiny random model draws no face: said as such, never turned into a distance.
    assert evaluation["measured"] is False and evaluation["references"] == 3
    assert [image["outcome"] for image in evaluation["images"]] == ["no_face"] * 4
    assert evaluation["summary"] == "no face found in any of the 4 generated images"
    assert evaluation["faces_found"] == 0 and evaluation["mean_distance"] is None
    assert evaluation["parameters"]["seeds"] == [1000, 1001] and len(evaluation["parameters"]["prompts"]) == 2
    created = AuditEntry.objects.for_tenant(job.tenant).get(action="identity_model.created")
    assert created.payload["activated"] is True and created.payload["job_id"] == job.pk

    # A second run makes version 2, which waits to be chosen; its evaluation finds the base pipeline the
    # first one left in the worker's cache (where the subject's generations will find it too).
    hits = pipeline_cache().hits
    second = _run(
        queue_training_job(actor=staff, subject=photographed, method="identity", overrides=FEW_STEPS)
    )
    assert pipeline_cache().hits == hits + 1
    newer = IdentityModel.objects.for_tenant(job.tenant).get(job=second)
    assert newer.version == 2 and not newer.is_active


def test_a_multiconcept_job_learns_the_style_set_too(photographed, built_set, staff, tenant):
    built_set(photographed)
    style_set = create_style_set(
        actor=staff,
        tenant=tenant,
        name="Backdrops",
        uploads=[
            NamedBytes(photos.no_face_jpeg(), "a.jpg"),
            NamedBytes(photos.as_format(photos.no_face_jpeg(), "PNG"), "b.png"),
        ],
    )
    job = queue_training_job(
        actor=staff,
        subject=photographed,
        method="multiconcept",
        style_set=style_set,
        overrides={"steps": 4, "preview_every": 0},
    )
    assert job.resolved_settings["phase1_steps"] == 2  # the preset's share of embedding steps is kept
    job = _run(job)
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    model = IdentityModel.objects.for_tenant(job.tenant).get(job=job)
    assert model.method == "multiconcept" and model.manifest["style_dataset_hash"]
    assert set(model.manifest["tokens"]) == {"identity", "style"}


def test_identity_jobs_keep_prior_preservation_on_except_in_the_quick_preset(photographed, built_set, staff):
    """The studio gets the method's default as the CLI does: the worker hands these settings to
    TrainConfig. quick, a trial run, leaves the class set out (docs/personalization.md, Presets)."""
    built_set(photographed)
    for preset, expected in (("standard", True), ("max", True), ("quick", False)):
        job = queue_training_job(actor=staff, subject=photographed, method="identity", preset=preset)
        assert job.resolved_settings["prior_preservation"] is expected, preset


def test_queueing_refuses_what_cannot_run_with_the_reason(photographed, built_set, staff, api_client_for):
    built_set(photographed)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"method": "multiconcept"}, "style_set"),
        ({"method": "identity", "preset": "turbo"}, "preset"),
        ({"method": "identity", "overrides": {"steps": 0}}, "overrides"),
        ({"method": "identity", "overrides": {"learning_rate_of_doom": 1}}, "overrides"),
        ({"method": "identity", "overrides": {"steps": True}}, "overrides"),
        ({"method": "identity", "overrides": {"resolution": 128}}, "overrides"),
    ]
    for kwargs, code in cases:
        with pytest.raises(JobError) as refused:
            queue_training_job(actor=staff, subject=photographed, **kwargs)
        assert refused.value.code == code, kwargs
    with pytest.raises(TrainingActionError, match="not a base model"):
        queue_training_job(actor=staff, subject=photographed, method="identity", base_model="/etc")
    client = api_client_for(staff, photographed.tenant)
    answer = client.post(
        "/api/v1/training-jobs/",
        {"subject": photographed.pk, "method": "identity", "overrides": {"steps": 999999}},
        format="json",
    )
    assert answer.status_code == 400 and answer.json()["code"] == "overrides"
    assert "steps: must be an integer from 1 to 20000" in answer.json()["detail"]
    assert not TrainingJob.objects.for_tenant(photographed.tenant).exists()


def test_queueing_with_changed_photos_starts_the_rebuild_and_says_so(photographed, built_set, staff):
    first = built_set(photographed)
    report = consent_actions.upload_reference_photos(
        actor=staff,
        subject=photographed,
        uploads=[NamedBytes(photos.photo_bytes("obama2.jpg", 900), "n.jpg")],
    )
    assert report.accepted
    with pytest.raises(JobError) as refused:
        queue_training_job(actor=staff, subject=photographed, method="identity")
    assert refused.value.code == "reference_set_building"
    rebuilt, started = request_reference_set(actor=staff, subject=photographed)
    assert (
        not started and rebuilt.version == first.version + 1 and rebuilt.status == ReferenceSetStatus.BUILDING
    )
    assert f"reference set {rebuilt.pk}" in refused.value.message


def test_a_job_whose_consent_lapsed_before_it_started_fails_with_the_reason_and_writes_nothing(
    training_consent_only_lapses, staff, built_set
):
    subject, training = training_consent_only_lapses
    built_set(subject)
    job = queue_training_job(actor=staff, subject=subject, method="identity", overrides=FEW_STEPS)
    consent_actions.record_revocation(actor=staff, record=training, reason="Letter", received_via="post")
    job = _run(job)
    assert job.status == JobStatus.FAILED and job.error_code == "consent_revoked"
    assert "revoked their consent to training an identity model" in job.error_message
    assert job.step == 0 and not IdentityModel.objects.for_tenant(subject.tenant).exists()
    assert _files(subject, AssetKind.ADAPTER, AssetKind.PREVIEW) == []


def test_a_base_model_that_cannot_be_loaded_fails_the_job_with_a_sentence(
    settings, photographed, staff, built_set, tmp_path: Path
):
    broken = tmp_path / "broken-model"
    shutil.copytree(django_settings.LIKENESS_BASE_MODEL, broken)
    settings.LIKENESS_TRAINING_BASE_MODELS = [settings.LIKENESS_BASE_MODEL, str(broken)]
    requested, _ = request_reference_set(actor=staff, subject=photographed, base_model=str(broken))
    from training.actions import build_reference_set

    build_reference_set(requested.pk)  # reads only the configs: the weights are not needed yet
    for weights in (broken / "unet").glob("diffusion_pytorch_model.*"):
        weights.unlink()
    job = queue_training_job(
        actor=staff, subject=photographed, method="identity", base_model=str(broken), overrides=FEW_STEPS
    )
    job = _run(job)
    assert job.status == JobStatus.FAILED and job.error_code == "training_refused", job.error_message
    assert str(broken) in job.error_message and "Traceback" not in job.error_message
    assert str(settings.LIKENESS_SCRATCH_ROOT) not in job.error_message
    assert not IdentityModel.objects.for_tenant(photographed.tenant).exists()


def _version(job: TrainingJob) -> IdentityModel:
    """A version recorded through the registry's action, with a stand-in artifact file."""
    artifact = consent_actions.store_subject_file(
        subject=job.subject,
        kind=AssetKind.ADAPTER,
        data=b"packed",
        content_type="application/gzip",
        extension="tar.gz",
    )
    return create_identity_model(job=job, artifact=artifact, manifest={"model_kind": "sd15"}, evaluation={})


def test_one_version_is_active_and_choosing_another_is_audited_and_permission_checked(
    photographed, built_set, staff, legal, api_client_for
):
    built_set(photographed)
    job = queue_training_job(actor=staff, subject=photographed, method="identity")
    first, second = _version(job), _version(job)
    assert first.is_active and not second.is_active
    with pytest.raises(PermissionDenied):
        activate_identity_model(actor=legal, model=second)
    activate_identity_model(actor=staff, model=second)
    first.refresh_from_db()
    second.refresh_from_db()
    assert second.is_active and not first.is_active and second.activated_by == staff
    entry = AuditEntry.objects.for_tenant(photographed.tenant).get(action="identity_model.activated")
    assert entry.payload == {"subject_id": photographed.pk, "version": 2, "previous_id": first.pk}

    # An object permission (django-guardian) lets a legal reviewer choose that one version only.
    assign_perm("training.activate_identitymodel", legal, first)
    activate_identity_model(actor=legal, model=first)
    legal_client = api_client_for(legal, photographed.tenant)
    assert legal_client.post(f"/api/v1/identity-models/{second.pk}/activate/").status_code == 403
    assert legal_client.post(f"/api/v1/identity-models/{first.pk}/activate/").status_code == 200

    # A version whose files were erased stays as history but cannot be chosen.
    erased = _version(job)
    Asset.objects.for_tenant(job.tenant).filter(pk=erased.artifact_id).delete()  # as retention and erasure do
    erased.refresh_from_db()
    assert not erased.is_usable
    with pytest.raises(TrainingActionError, match="files were erased"):
        activate_identity_model(actor=staff, model=erased)
    listing = api_client_for(staff, photographed.tenant).get(
        f"/api/v1/identity-models/?subject={photographed.pk}"
    )
    rows = listing.json()["results"]
    assert [(row["version"], row["is_active"], row["is_usable"]) for row in rows] == [
        (3, False, False),
        (2, False, True),
        (1, True, True),
    ]
    # Reviewers read every version and training run, never the files (consent.view_asset).
    assert legal_client.get(f"/api/v1/training-jobs/{job.pk}/").status_code == 200
    assert legal_client.get(f"/api/v1/assets/{first.artifact_id}/download/").status_code == 404
    assert (
        legal_client.post(
            "/api/v1/training-jobs/", {"subject": photographed.pk, "method": "identity"}
        ).status_code
        == 403
    )


def test_the_web_process_never_loads_torch_or_the_diffusion_core():
    """The training kind is registered in every process, but torch and the core load only in a worker that
    runs a job: a web process (URLs, API, sockets, tasks' modules) starts without them."""
    import subprocess
    import sys

    probe = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); import django; "
        "django.setup(); import config.urls, config.asgi, training.tasks, training.kind; "
        "heavy = ('torch', 'diffusers', 'transformers', 'dlib'); "
        "print(sorted(name for name in heavy if name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]", result.stderr
