"""Fixtures of the training tests: private storage, quick heartbeats, the probe kind, consented subjects,
subjects with reference photos and their reference sets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from consent.models import Subject
from tests.training import probe
from training.jobs import queue_job
from training.models import Job, ReferenceSet


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


@pytest.fixture
def photographed(enrolled_subject: Subject, staff: Any) -> Subject:
    """The enrolled subject (person A, every purpose consented) with three reference photos."""
    from consent.actions import upload_reference_photos
    from tests.consent import photos
    from tests.fixtures.consent import NamedBytes

    report = upload_reference_photos(
        actor=staff,
        subject=enrolled_subject,
        uploads=[
            NamedBytes(photos.photo_bytes(name), name) for name in ("obama.jpg", "obama2.jpg", "obama3.jpg")
        ],
    )
    assert len(report.accepted) == 3, report.rejected
    return enrolled_subject


@pytest.fixture
def built_set(staff: Any) -> Callable[..., ReferenceSet]:
    """`built_set(subject)`: the subject's reference set requested and built here, as the worker would."""
    from training.actions import build_reference_set, request_reference_set

    def build(subject: Subject, actor: Any = None) -> ReferenceSet:
        requested, _ = request_reference_set(actor=actor or staff, subject=subject)
        build_reference_set(requested.pk)
        requested.refresh_from_db()
        return requested

    return build


@pytest.fixture
def training_consent_only_lapses(
    make_subject: Callable[..., Subject], sign: Callable[..., Any], staff: Any
) -> tuple[Subject, Any]:
    """A subject with a reference photo and two consents: training, and generation (which keeps their data
    when the training one is revoked, so only that purpose lapses). Returns (subject, the training record)."""
    from consent.actions import set_enrollment_photo, upload_reference_photos
    from tests.consent import photos
    from tests.fixtures.consent import NamedBytes

    subject = make_subject()
    training = sign(subject, ["train_identity"])
    sign(subject, ["generate_images"])
    set_enrollment_photo(
        actor=staff, subject=subject, upload=NamedBytes(photos.photo_bytes("obama.jpg"), "a.jpg")
    )
    upload_reference_photos(
        actor=staff, subject=subject, uploads=[NamedBytes(photos.photo_bytes("obama2.jpg"), "b.jpg")]
    )
    return subject, training
