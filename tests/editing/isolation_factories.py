"""Isolation-test factories for the editing models: rows written directly (the routes only look them up)."""

from __future__ import annotations

from django.utils import timezone

from consent import actions
from consent.models import AssetKind, ConsentRecord
from editing.models import EditJob, GenerationJob, Output, OutputKind
from tenancy.models import Tenant
from tests.consent.isolation_factories import make_record
from tests.isolation import isolation_factory
from training.models import IdentityModel, JobStatus


def _model(record: ConsentRecord) -> IdentityModel:
    """A registry row for the subject; its files are never loaded by these tests."""
    return IdentityModel.objects.for_tenant(record.tenant).create(
        subject=record.subject,
        version=1,
        method="identity",
        base_model="var/models/tiny-sd",
        model_kind="sd15",
        manifest={"tokens": {"identity": "<sks>"}, "class_word": "person", "resolution": 64},
        created_at=timezone.now(),
    )


def _job_fields(record: ConsentRecord) -> dict[str, object]:
    return {
        "subject": record.subject,
        "consent_record": record,
        "status": JobStatus.QUEUED,
        "created_at": timezone.now(),
        "identity_model": _model(record),
        "steps": 2,
        "guidance": 7.5,
    }


@isolation_factory(GenerationJob)
def make_generation_job(tenant: Tenant) -> GenerationJob:
    return GenerationJob.objects.for_tenant(tenant).create(
        kind="generation",
        prompt="a photo of {identity} {class_word}",
        count=1,
        seed=0,
        width=64,
        height=64,
        **_job_fields(make_record(tenant)),
    )


@isolation_factory(EditJob)
def make_edit_job(tenant: Tenant) -> EditJob:
    return EditJob.objects.for_tenant(tenant).create(
        kind="edit",
        preset="smile",
        source_prompt="a photo of {identity} {class_word}",
        **_job_fields(make_record(tenant)),
    )


@isolation_factory(Output)
def make_output(tenant: Tenant) -> Output:
    job = make_generation_job(tenant)
    image = actions.store_subject_file(
        subject=job.subject,
        kind=AssetKind.OUTPUT,
        data=b"\x89PNG output",
        content_type="image/png",
        extension="png",
    )
    now = timezone.now()
    return Output.objects.for_tenant(tenant).create(
        subject=job.subject,
        job=job,
        identity_model=job.identity_model,
        kind=OutputKind.GENERATION,
        status_changed_at=now,
        image=image,
        prompt="a photo of <sks> person",
        seed=0,
        created_at=now,
    )
