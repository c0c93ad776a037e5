"""The job machinery across real processes: a Celery worker on the `gpu` queue, the broker and the
channel layer in Redis, a WebSocket client, and a worker killed with SIGKILL in the middle of a job.

These tests commit (transactional database): the worker reads the same PostgreSQL test database.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.utils import timezone

from config.asgi import application
from consent.faults import CRASH_ENV
from tests.fixtures.workers import wait_for
from tests.support import requires_redis, socket_headers
from tests.training import probe
from training.jobs.lifecycle import requeue_or_fail_stale
from training.models import Job, JobStatus

pytestmark = [
    requires_redis,
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def start_worker(start_worker: Callable[..., subprocess.Popen[str]]) -> Callable[..., subprocess.Popen[str]]:
    """The shared real worker (tests/fixtures/workers.py), its probe steps slow enough to follow."""
    return functools.partial(start_worker, **{probe.STEPS_ENV: "6", probe.STEP_SECONDS_ENV: "0.3"})


def test_a_socket_sees_the_snapshot_then_every_step_in_order_then_the_end(
    queue_probe, consented, staff, client_for, start_worker
):
    subject = consented()
    job = queue_probe(subject)  # committed and handed to the broker; no worker yet
    received: list[dict[str, Any]] = []
    headers = socket_headers(client_for(staff, subject.tenant))

    async def follow() -> None:
        communicator = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        received.append(json.loads(await communicator.receive_from(timeout=10)))
        await sync_to_async(start_worker)()
        while True:
            message = json.loads(await communicator.receive_from(timeout=120))
            received.append(message)
            if message["data"]["status"] in ("succeeded", "failed", "cancelled"):
                break
        await communicator.disconnect()

    async_to_sync(follow)()
    snapshot, *events = received
    assert snapshot["type"] == "snapshot" and snapshot["data"]["status"] == "queued"
    assert snapshot["data"]["queue_position"] is None  # already handed to the broker
    assert all(event["type"] == "event" for event in events)
    steps = [event["data"]["step"] for event in events if event["data"]["status"] == "running"]
    assert steps == sorted(steps) and len(set(steps)) >= 4, steps
    final = events[-1]["data"]
    assert final["status"] == "succeeded", final["error_message"]
    assert final["step"] == final["total_steps"] == 6 and final["progress"] == 1.0
    assert final["eta_seconds"] is None and len(final["loss_history"]) == 6
    assert final["device"] == "cpu" and final["worker_host"]  # the page's Worker row follows these


def test_a_worker_killed_mid_job_leaves_it_requeued_and_finished_by_another(
    queue_probe, consented, start_worker
):
    job = queue_probe(consented())
    crashing = start_worker(**{CRASH_ENV: "probe.step:3"})
    wait_for(lambda: crashing.poll() is not None, 120, crashing)
    assert crashing.returncode == -signal.SIGKILL, crashing.stdout.read() if crashing.stdout else ""
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.step == 2 and job.attempts == 1

    # Nothing is stuck: once its heartbeat is stale the reaper (beat's training.tend_jobs) queues the
    # job again, and the next worker runs it from the start.
    time.sleep(settings.LIKENESS_JOB_STALE_SECONDS + 0.5)
    assert requeue_or_fail_stale(timezone.now()) == [job.pk]
    worker = start_worker()
    jobs = Job.objects.for_tenant(job.tenant)
    wait_for(lambda: jobs.get(pk=job.pk).status == JobStatus.SUCCEEDED, 120, worker)
    job.refresh_from_db()
    assert job.attempts == 2 and job.step == 6
