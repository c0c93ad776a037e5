"""Fixtures of the generation and edit tests: private storage, fast progress, a subject's trained model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consent.models import ConsentRecord, Subject
from editing.models import Output
from training.jobs.dispatch import dispatch_jobs
from training.jobs.runner import run_job
from training.models import IdentityModel, Job, JobStatus


@pytest.fixture(autouse=True)
def _job_settings(settings: Any, storage_root: Path, tmp_path: Path) -> None:
    settings.LIKENESS_JOB_PROGRESS_SECONDS = 0.0
    settings.LIKENESS_SCRATCH_ROOT = tmp_path / "scratch"


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    """Engineers share two cores; one thread also keeps CPU results the same from run to run."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def record(make_subject: Callable[..., Subject], sign: Callable[..., ConsentRecord]) -> ConsentRecord:
    """Maya Example's consent to every purpose (no photo: review tests make outputs with output_for)."""
    return sign(make_subject("Maya Example"))


@pytest.fixture
def model(enrolled_subject: Subject, make_identity_model: Callable[..., IdentityModel]) -> IdentityModel:
    """Version 1 of the enrolled subject's model (person A, every purpose consented)."""
    return make_identity_model(enrolled_subject)


@pytest.fixture
def run_in_process() -> Callable[[Job], Job]:
    """`run_in_process(job)`: hand the job over as the dispatcher does, run it here, return it reloaded."""

    def run(job: Job) -> Job:
        dispatch_jobs()
        job.refresh_from_db()
        assert job.dispatch_token is not None, "the job was not handed over"
        run_job(job.pk, str(job.dispatch_token), host="test-host")
        job.refresh_from_db()
        return job

    return run


@pytest.fixture
def made(model: IdentityModel, staff: Any, run_in_process: Callable[[Job], Job]) -> Output:
    """A finished generation job of the model with its one output."""
    from editing.actions import queue_generation

    job = run_in_process(
        queue_generation(actor=staff, identity_model=model, prompt_preset="portrait", steps=2)
    )
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    return Output.objects.for_tenant(model.tenant).get(job=job)


@pytest.fixture(scope="session")
def c2pa_chain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development signing chain of the test session's own (not the checkout's var/certs/)."""
    from editing.provenance.certificates import ensure_dev_chain

    directory = tmp_path_factory.mktemp("c2pa")
    ensure_dev_chain(directory)
    return directory


@pytest.fixture
def release_signing(settings: Any, c2pa_chain_dir: Path) -> Path:
    """Releases sign with the session's chain; returns its folder (root.pem is the trust anchor)."""
    settings.LIKENESS_C2PA_CERT_CHAIN = str(c2pa_chain_dir / "chain.pem")
    settings.LIKENESS_C2PA_KEY_FILE = str(c2pa_chain_dir / "signer.key")
    settings.LIKENESS_C2PA_KEY_PEM = ""
    settings.LIKENESS_C2PA_TRUST_ANCHORS = str(c2pa_chain_dir / "root.pem")
    return c2pa_chain_dir
