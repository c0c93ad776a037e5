"""A job kind for testing the job machinery itself: a few steps of real waiting, real progress, one file.

It runs real code through every part the product's kinds use (the runner, the
context's progress and consent checks, encrypted storage, the fair queue, the
socket) without a diffusion model, so the machinery's own properties (state
machine, fairness, cancellation, crash recovery) are tested fast and alone. The
product's kinds are tested end to end on the tiny model in their own files.
Its settings come from the environment, so a worker subprocess behaves the same.
"""

from __future__ import annotations

import os
import time
from typing import Any

from consent.faults import crash_point
from consent.models import AssetKind, Purpose
from training.jobs import JobContext, JobKind, register_job_kind
from training.jobs.kinds import unregister_job_kind
from training.models import Job

PROBE = "probe"
STEPS_ENV = "LIKENESS_PROBE_STEPS"
STEP_SECONDS_ENV = "LIKENESS_PROBE_STEP_SECONDS"


def execute(job: Any, context: JobContext) -> None:
    steps = int(os.environ.get(STEPS_ENV, "5"))
    pause = float(os.environ.get(STEP_SECONDS_ENV, "0"))
    context.device = "cpu"
    for step in range(1, steps + 1):
        time.sleep(pause)
        crash_point("probe.step")
        context.report(
            step=step,
            total=steps,
            phase="probe",
            losses={"total": 1.0 / step},
            learning_rates={"probe": 1e-4},
            eta_seconds=(steps - step) * pause,
        )
    context.store_file(
        kind=AssetKind.OUTPUT, data=b"probe output", content_type="application/octet-stream", extension="bin"
    )


def register() -> None:
    register_job_kind(
        JobKind(name=PROBE, label="Probe", model=Job, purpose=Purpose.TRAIN_IDENTITY, execute=execute)
    )


def unregister() -> None:
    unregister_job_kind(PROBE)
