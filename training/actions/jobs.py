"""Queueing a training job: validate what was asked, pin the data, hand it to the job machinery.

The job pins the exact reference set version (so its captions) and style set
version it trains on, and stores both the preset and overrides as asked and
every setting as resolved, so the run can be explained and repeated. Consent
(`train_identity`) is checked here, again when a worker starts the job, and
before every file it stores (training.jobs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from consent import actions as consent_actions
from consent.actions.common import Actor
from consent.models import Purpose, Subject
from tenancy.permissions import require_perm
from training.actions.common import TrainingActionError, allowed_base_model
from training.actions.references import (
    current_photo_ids,
    is_current,
    latest_reference_set,
    request_reference_set,
)
from training.jobs import JobError, queue_job
from training.models import TRAINING_KIND, ReferenceSetStatus, StyleSet, TrainingJob, TrainingMethod


def resolve_settings(
    method: str, preset: str, overrides: Mapping[str, Any] | None, *, resolution: int
) -> dict[str, Any]:
    """Every training setting of `preset` with `overrides` applied (the core's presets, validated there),
    at the resolution the reference set was prepared at.

    A job never writes checkpoints: its scratch folder goes when the run ends, so
    a later attempt starts over and a checkpoint would be written for nothing.
    """
    from personalization.presets import PresetError, resolve_training

    try:
        resolved = resolve_training(method, preset, overrides, base_resolution=resolution)
    except PresetError as error:
        code = "preset" if set(error.problems) <= {"method", "preset"} else "overrides"
        raise JobError(f"Refused: {error}.", code=code) from None
    if resolved.resolution != resolution:
        raise JobError(
            f"The reference photos are prepared at {resolution} px (the base model's size): the "
            "resolution cannot be overridden.",
            code="overrides",
        )
    return {**resolved.values, "checkpoint_every": 0}


def queue_training_job(
    *,
    actor: Actor,
    subject: Subject,
    method: str,
    style_set: StyleSet | None = None,
    preset: str = "quick",
    overrides: Mapping[str, Any] | None = None,
    base_model: str | None = None,
) -> TrainingJob:
    """Queue a training run of `subject` on their current reference set (JobError says why not).

    When the subject's reference set is missing or stale (their photos changed),
    its build starts here and the job is refused with that reason: the captions
    of a new set deserve a look before training, and a job must never wait in a
    GPU slot for a CPU build.
    """
    tenant = subject.tenant
    require_perm(actor, tenant, "training.add_trainingjob")
    base = allowed_base_model(base_model)
    if method not in TrainingMethod.values:
        raise JobError(f"method must be identity or multiconcept, not {str(method)[:40]!r}.", code="method")
    if method == TrainingMethod.MULTICONCEPT and style_set is None:
        raise JobError("The multiconcept method learns a style too: choose a style set.", code="style_set")
    if method == TrainingMethod.IDENTITY and style_set is not None:
        raise JobError(
            "A style set belongs to the multiconcept method; leave it out for identity.", code="style_set"
        )
    if style_set is not None and style_set.tenant_id != tenant.pk:
        raise JobError("No such style set.", code="style_set")
    consent_actions.require(subject, Purpose.TRAIN_IDENTITY)
    reference_set = latest_reference_set(subject, base)
    ready = (
        reference_set is not None
        and reference_set.status == ReferenceSetStatus.READY
        and is_current(reference_set, current_photo_ids(subject))
    )
    if not ready:
        try:
            building, _ = request_reference_set(actor=actor, subject=subject, base_model=base)
        except TrainingActionError as error:
            raise JobError(error.message, code=error.code) from None
        raise JobError(
            f"The reference set of {subject.display_name} is being built from their current reference photos "
            f"(reference set {building.pk}, version {building.version}). Check its captions once it is "
            "ready, then queue the training again.",
            code="reference_set_building",
        )
    assert reference_set is not None and reference_set.resolution is not None
    job = TrainingJob(
        tenant=tenant,
        subject=subject,
        kind=TRAINING_KIND,
        method=method,
        base_model=base,
        preset=preset,
        overrides=dict(overrides or {}),
        resolved_settings=resolve_settings(method, preset, overrides, resolution=reference_set.resolution),
        reference_set=reference_set,
        style_set=style_set,
    )
    with transaction.atomic():
        queue_job(actor=actor, job=job, add_permission="training.add_trainingjob")
    return job
