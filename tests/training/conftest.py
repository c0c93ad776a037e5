"""Fixtures of the job tests: private storage, quick heartbeats, the probe kind, consented subjects."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from consent.models import Subject
from tests.training import probe
from training.jobs import queue_job
from training.models import Job


@pytest.fixture(autouse=True)
def _job_settings(settings: Any, storage_root: Path, tmp_path: Path) -> None:
    settings.LIKENESS_JOB_PROGRESS_SECONDS = 0.0
    settings.LIKENESS_JOB_HEARTBEAT_SECONDS = 1.0
    settings.LIKENESS_JOB_STALE_SECONDS = 3
    settings.LIKENESS_SCRATCH_ROOT = tmp_path / "scratch"


@pytest.fixture
def probe_kind() -> Iterator[None]:
    probe.register()
    yield
    probe.unregister()


@pytest.fixture
def consented(make_subject: Callable[..., Subject], sign: Callable[..., Any]) -> Callable[..., Subject]:
    """A new subject of the test tenant who signed every purpose."""

    def create(name: str = "Barack Example") -> Subject:
        subject = make_subject(name)
        sign(subject)
        return subject

    return create


@pytest.fixture
def queue_probe(probe_kind: None, staff: Any) -> Callable[..., Job]:
    """`queue_probe(subject)`: a probe job queued through the real queueing action."""

    def queue(subject: Subject, actor: Any = None) -> Job:
        job = Job(tenant=subject.tenant, subject=subject, kind=probe.PROBE)
        # The probe has no model of its own: it asks a permission staff hold and reviewers do not.
        return queue_job(actor=actor or staff, job=job, add_permission="training.cancel_job")

    return queue
