"""Isolation-test factories for the training app's models: rows written directly (what the routes look up)."""

from __future__ import annotations

from django.utils import timezone

from consent.models import Subject
from tenancy.models import Tenant
from tests.consent.isolation_factories import make_record
from tests.isolation import isolation_factory
from training.models import (
    TRAINING_KIND,
    IdentityModel,
    Job,
    JobStatus,
    ReferenceItem,
    ReferenceSet,
    ReferenceSetStatus,
    StyleSet,
    TrainingJob,
)


@isolation_factory(Job)
def make_job(tenant: Tenant) -> Job:
    """A queued job on a consented subject, written directly (the row is what the routes look up)."""
    record = make_record(tenant)
    return Job.objects.for_tenant(tenant).create(
        kind="training",
        subject=record.subject,
        consent_record=record,
        status=JobStatus.QUEUED,
        created_at=timezone.now(),
    )


def _reference_set(tenant: Tenant, subject: Subject) -> ReferenceSet:
    return ReferenceSet.objects.for_tenant(tenant).create(
        subject=subject,
        version=1,
        status=ReferenceSetStatus.READY,
        base_model="var/models/tiny-sd",
        resolution=64,
        token="<sks>",
        class_word="person",
        created_at=timezone.now(),
    )


@isolation_factory(ReferenceSet)
def make_reference_set(tenant: Tenant) -> ReferenceSet:
    return _reference_set(tenant, make_record(tenant).subject)


@isolation_factory(ReferenceItem)
def make_reference_item(tenant: Tenant) -> ReferenceItem:
    return ReferenceItem.objects.for_tenant(tenant).create(
        reference_set=make_reference_set(tenant),
        name="0001",
        caption="a photo of <sks> person, facing the camera",
        crop_sha256="0" * 64,
        face_mask_sha256="0" * 64,
    )


@isolation_factory(StyleSet)
def make_style_set(tenant: Tenant) -> StyleSet:
    return StyleSet.objects.for_tenant(tenant).create(
        name="Studio light", version=1, created_at=timezone.now()
    )


@isolation_factory(TrainingJob)
def make_training_job(tenant: Tenant) -> TrainingJob:
    record = make_record(tenant)
    return TrainingJob.objects.for_tenant(tenant).create(
        kind=TRAINING_KIND,
        subject=record.subject,
        consent_record=record,
        status=JobStatus.QUEUED,
        created_at=timezone.now(),
        method="identity",
        base_model="var/models/tiny-sd",
        preset="quick",
        reference_set=_reference_set(tenant, record.subject),
    )


@isolation_factory(IdentityModel)
def make_identity_model(tenant: Tenant) -> IdentityModel:
    """A version without an artifact (as after erasure): the routes look up the row."""
    return IdentityModel.objects.for_tenant(tenant).create(
        subject=make_record(tenant).subject,
        version=1,
        method="identity",
        base_model="var/models/tiny-sd",
        model_kind="sd15",
        created_at=timezone.now(),
    )
