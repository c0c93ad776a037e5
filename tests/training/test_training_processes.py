"""Training jobs on a real Celery worker (`default` and `gpu` queues, Redis broker, PostgreSQL): a tiny-model
`quick` identity job started through the API ends in a version the core loads, on which a generation and
an edit job make outputs pending review; a cancel or a revocation mid-run stops the job, leaving no
version and no file; nobody outside the tenant reaches the job or model.

These tests commit (transactional database): the worker reads the same PostgreSQL test database.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from config.asgi import application
from consent import actions as consent_actions
from consent import vault
from consent.models import Asset, AssetKind
from consent.storage import private_storage, subject_prefix, walk
from editing.models import GenerationJob
from tenancy.models import Role
from tenancy.realtime import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND
from tests.fixtures.workers import wait_for
from tests.support import requires_redis, socket_headers
from training.actions import queue_training_job
from training.artifacts import unpack_to
from training.models import TERMINAL_STATUSES, IdentityModel, Job, JobStatus

pytestmark = [
    requires_redis,
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]
# Long enough to be stopped in the middle, whatever the machine's speed.
LONG_RUN = {"steps": 2000, "preview_every": 0}


def _close_code(client: Any, job_id: int) -> int | None:
    """How the job's socket answers this client: None when it is let in (the snapshot arrives)."""

    async def attempt() -> int | None:
        headers = socket_headers(client)
        communicator = WebsocketCommunicator(application, f"/ws/jobs/{job_id}/", headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        message = await communicator.receive_output(timeout=10)
        await communicator.disconnect()
        return message.get("code") if message["type"] == "websocket.close" else None

    return async_to_sync(attempt)()


def _status_in(client: Any, url: str, statuses: set[str]) -> bool:
    return bool(client.get(url).json()["status"] in statuses)


def test_a_quick_identity_job_started_through_the_api_ends_in_a_version_the_core_loads(
    photographed,
    staff,
    api_client_for,
    client_for,
    start_worker,
    tenant_factory,
    member,
    user_factory,
    tmp_path,
):
    worker = start_worker()
    client = api_client_for(staff, photographed.tenant)
    building = client.post("/api/v1/reference-sets/", {"subject": photographed.pk}, format="json")
    assert building.status_code == 202, building.content
    set_url = f"/api/v1/reference-sets/{building.json()['id']}/"
    wait_for(lambda: client.get(set_url).json()["status"] != "building", 120, worker)
    assert client.get(set_url).json()["status"] == "ready", client.get(set_url).json()["error_message"]

    started = time.monotonic()
    queued = client.post(
        "/api/v1/training-jobs/",
        {"subject": photographed.pk, "method": "identity", "preset": "quick", "overrides": {"steps": 8}},
        format="json",
    )
    assert queued.status_code == 201, queued.content
    body = queued.json()
    assert body["status"] == "queued" and body["kind"] == "training" and body["preset"] == "quick"
    job_url = f"/api/v1/training-jobs/{body['id']}/"
    ended = {status.value for status in TERMINAL_STATUSES}
    wait_for(functools.partial(_status_in, client, job_url, ended), 300, worker)
    seconds = time.monotonic() - started
    print(f"\ntiny quick identity job (8 steps), queue to succeeded through the real worker: {seconds:.1f} s")
    done = client.get(job_url).json()
    assert done["status"] == "succeeded", done["error_message"]
    assert done["step"] == done["total_steps"] == 8 and done["device"] == "cpu" and done["wall_seconds"] > 0

    model_json = client.get(f"/api/v1/identity-models/{done['identity_model']}/").json()
    assert model_json["is_active"] and model_json["is_usable"] and model_json["version"] == 1
    model = IdentityModel.objects.for_tenant(photographed.tenant).get(pk=model_json["id"])
    assert model.artifact is not None
    folder = unpack_to(vault.read_asset(model.artifact), tmp_path / "trained")
    from personalization.artifacts import load_trained
    from personalization.models import load_pipeline

    pipe = load_pipeline(model.base_model, device="cpu")
    manifest = load_trained(pipe, folder)
    assert manifest.tokens == {"identity": "<sks>"} and manifest.steps == 8
    assert manifest.dataset_hash == client.get(set_url).json()["dataset_hash"]

    # Then a generation and an edit on the new version, in the same worker: outputs pending review. The
    # training's evaluation left the base pipeline loaded, so the generation does not load it again.
    generation = client.post(
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
    edit = client.post(
        "/api/v1/edit-jobs/",
        {"model": model.pk, "source_photo": photographed.enrollment_photo_id, "preset": "smile", "steps": 3},
        format="json",
    )
    assert generation.status_code == edit.status_code == 201, (generation.content, edit.content)
    for made in (generation.json(), edit.json()):
        url = f"/api/v1/{made['kind']}-jobs/{made['id']}/"
        wait_for(functools.partial(_status_in, client, url, ended), 300, worker)
        assert client.get(url).json()["status"] == "succeeded", client.get(url).json()["error_message"]
        outputs = client.get(f"/api/v1/outputs/?job={made['id']}").json()["results"]
        assert outputs and {output["status"] for output in outputs} == {"pending_review"}
    assert GenerationJob.objects.for_tenant(model.tenant).get(pk=generation.json()["id"]).pipeline_reused

    # Another brand's member (any role) finds nothing; an account without a brand is refused.
    other = tenant_factory()
    outsider = member(other, Role.ADMIN)
    outside = api_client_for(outsider, other)
    assert outside.get(job_url).status_code == 404
    assert outside.get(f"/api/v1/identity-models/{model.pk}/").status_code == 404
    assert outside.post(f"/api/v1/identity-models/{model.pk}/activate/").status_code == 404
    assert outside.get(f"/api/v1/assets/{model.artifact_id}/download/").status_code == 404
    assert client_for(outsider, other).get(f"/jobs/{done['id']}/").status_code == 404
    assert _close_code(client_for(outsider, other), done["id"]) == CLOSE_NOT_FOUND
    assert _close_code(client_for(user_factory()), done["id"]) == CLOSE_FORBIDDEN
    assert _close_code(client_for(staff, photographed.tenant), done["id"]) is None


@pytest.fixture
def long_job_running(photographed, built_set, staff, start_worker) -> tuple[Job, Any]:
    """A long identity job of `photographed`, run by a real worker until it is a few steps in."""
    built_set(photographed)
    job = queue_training_job(actor=staff, subject=photographed, method="identity", overrides=LONG_RUN)
    worker = start_worker()
    jobs = Job.objects.for_tenant(job.tenant)
    wait_for(lambda: jobs.get(pk=job.pk).step >= 3, 300, worker)
    return job, worker


def _ended(job: Job, worker: Any) -> Job:
    jobs = Job.objects.for_tenant(job.tenant)
    wait_for(lambda: jobs.get(pk=job.pk).status in TERMINAL_STATUSES, 120, worker)
    job.refresh_from_db()
    return job


def test_cancelling_mid_run_stops_the_job_leaving_no_version_and_no_file(
    photographed, staff, api_client_for, long_job_running
):
    job, worker = long_job_running
    cancelled = api_client_for(staff, photographed.tenant).post(
        f"/api/v1/training-jobs/{job.pk}/cancel/", {"reason": "Wrong photos"}, format="json"
    )
    assert cancelled.status_code == 202
    job = _ended(job, worker)
    assert job.status == JobStatus.CANCELLED and job.error_message == "Wrong photos"
    assert 3 <= job.step < LONG_RUN["steps"]
    assert not IdentityModel.objects.for_tenant(job.tenant).exists()
    assert not Asset.objects.for_tenant(job.tenant).filter(kind=AssetKind.ADAPTER).exists()
    adapters = [name for name in walk(private_storage(), "tenants") if "/adapter/" in name]
    assert adapters == []


def test_revoking_consent_mid_run_stops_the_job_and_erases_every_file_of_the_subject(
    photographed, link_tokens, long_job_running
):
    job, worker = long_job_running
    (record,) = photographed.records.all()
    consent_actions.revoke_via_link(token=link_tokens[record.pk])
    job = _ended(job, worker)
    certificates = photographed.deletion_certificates
    wait_for(lambda: certificates.filter(completed_at__isnull=False).exists(), 120, worker)
    # The gate refuses at the next step (the revocation ended the consent at once); the erasure that follows
    # (on the same worker, after the job) finds the job ended and removes every file.
    assert job.status == JobStatus.FAILED and job.error_code == "consent_revoked", job.error_message
    assert "revoked their consent to training an identity model" in job.error_message
    assert job.step < LONG_RUN["steps"]
    assert not IdentityModel.objects.for_tenant(job.tenant).exists()
    assert not Asset.objects.for_tenant(job.tenant).filter(subject=photographed).exists()
    assert walk(private_storage(), subject_prefix(photographed.tenant_id, photographed.pk)) == []
    assert certificates.get().destroyed_counts.get("crop") == 3
    reference_set = job.specific().reference_set
    assert reference_set.status == "erased"
    assert set(reference_set.items.values_list("caption", flat=True)) == {""}
