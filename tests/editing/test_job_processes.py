"""Generation and edit jobs end to end across real processes: started through the API, run by a real Celery
worker on the `gpu` queue (broker in Redis) on a trained tiny model, outputs downloaded and decrypted.

These tests commit (transactional database): the worker reads the same PostgreSQL test database.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from consent import vault
from editing.models import EditJob, GenerationJob, Output, OutputStatus
from tests.fixtures.workers import wait_for
from tests.support import requires_redis
from training.models import TERMINAL_STATUSES, Job, JobStatus

pytestmark = [
    requires_redis,
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]
JOB_TIMEOUT = 300  # seconds; the tiny model's jobs take a few (docs/benchmarks.md), the machine is shared


def _finished(job_id: int, worker) -> Job:
    jobs = Job.dangerously_unscoped
    wait_for(lambda: jobs.get(pk=job_id).status in TERMINAL_STATUSES, JOB_TIMEOUT, worker)
    job = jobs.get(pk=job_id)
    assert job.status == JobStatus.SUCCEEDED, (job.error_code, job.error_message)
    return job


def test_generation_and_edit_jobs_run_on_a_worker_that_keeps_the_model_loaded(
    model, staff, api_client_for, start_worker
):
    worker = start_worker()
    client = api_client_for(staff, model.tenant)
    subject = model.subject

    first = client.post(
        "/api/v1/generation-jobs/",
        {
            "model": model.pk,
            "prompt": "a photo of {identity} {class_word}",
            "count": 2,
            "seed": 5,
            "steps": 3,
        },
        format="json",
    )
    assert first.status_code == 201, first.content
    job = _finished(first.json()["id"], worker)
    outputs = list(Output.objects.for_tenant(model.tenant).filter(job=job).order_by("seed"))
    assert [output.seed for output in outputs] == [5, 6]
    for output in outputs:
        assert output.status == OutputStatus.PENDING_REVIEW
        assert output.identity_outcome == "no_face" and output.scores["identity"]["faces_in_output"] == 0
        # The route serves the review preview (docs/compliance.md); the stored image is the model's size.
        assert client.get(f"/api/v1/outputs/{output.pk}/download/").status_code == 200
        assert output.image is not None
        assert Image.open(io.BytesIO(vault.read_asset(output.image))).size == (64, 64)
    assert job.device == "cpu" and job.wall_seconds > 0 and job.peak_memory_bytes > 0

    # The same model again in the same worker process: its pipeline is still loaded.
    again = client.post(
        "/api/v1/generation-jobs/",
        {"model": model.pk, "prompt_preset": "headshot", "steps": 2},
        format="json",
    )
    _finished(again.json()["id"], worker)
    generations = GenerationJob.objects.for_tenant(model.tenant)
    assert generations.get(pk=job.pk).pipeline_reused is False
    assert generations.get(pk=again.json()["id"]).pipeline_reused is True

    edit = client.post(
        "/api/v1/edit-jobs/",
        {"model": model.pk, "source_photo": subject.enrollment_photo_id, "preset": "smile", "steps": 3},
        format="json",
    )
    assert edit.status_code == 201, edit.content
    edited = _finished(edit.json()["id"], worker)
    assert EditJob.objects.for_tenant(model.tenant).get(pk=edited.pk).pipeline_reused is True
    (output,) = Output.objects.for_tenant(model.tenant).filter(job=edited)
    assert output.status == OutputStatus.PENDING_REVIEW
    assert output.scores["background"]["available"] and output.background_ssim is not None
    assert output.region_mask is not None and output.subject_mask is not None
    assert client.get(f"/api/v1/outputs/{output.pk}/download/").status_code == 200
    photo = client.get(f"/api/v1/assets/{subject.enrollment_photo_id}/download/")
    assert output.image is not None
    edited_size = Image.open(io.BytesIO(vault.read_asset(output.image))).size
    assert edited_size == Image.open(io.BytesIO(photo.content)).size
