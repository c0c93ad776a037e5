"""Isolation-test factories for the editing models: rows written directly (the routes only look them up)."""

from __future__ import annotations

import hashlib
import io

from django.contrib.auth import get_user_model
from django.utils import timezone
from PIL import Image

from consent import actions
from consent.models import AssetKind, ConsentRecord
from editing.models import EditJob, GenerationJob, Output, OutputKind, Release
from tenancy.models import Tenant
from tests.consent.isolation_factories import make_record
from tests.isolation import isolation_factory
from training.models import IdentityModel, JobStatus

User = get_user_model()


def _model(record: ConsentRecord) -> IdentityModel:
    """A registry row for the subject (one version, shared by its jobs); its files are never loaded here."""
    model, _ = IdentityModel.objects.for_tenant(record.tenant).get_or_create(
        subject=record.subject,
        version=1,
        defaults={
            "method": "identity",
            "base_model": "var/models/tiny-sd",
            "model_kind": "sd15",
            "manifest": {"tokens": {"identity": "<sks>"}, "class_word": "person", "resolution": 64},
            "created_at": timezone.now(),
        },
    )
    return model


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


def generation_job_for(record: ConsentRecord) -> GenerationJob:
    return GenerationJob.objects.for_tenant(record.tenant).create(
        kind="generation",
        prompt="a photo of {identity} {class_word}",
        count=1,
        seed=0,
        width=64,
        height=64,
        **_job_fields(record),
    )


def edit_job_for(record: ConsentRecord) -> EditJob:
    return EditJob.objects.for_tenant(record.tenant).create(
        kind="edit",
        preset="smile",
        source_prompt="a photo of {identity} {class_word}",
        **_job_fields(record),
    )


@isolation_factory(GenerationJob)
def make_generation_job(tenant: Tenant) -> GenerationJob:
    return generation_job_for(make_record(tenant))


@isolation_factory(EditJob)
def make_edit_job(tenant: Tenant) -> EditJob:
    return edit_job_for(make_record(tenant))


def _png() -> bytes:
    """A real (tiny) image, so pages that show outputs load and decode them as a browser would."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (180, 120, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


_PNG = _png()


def output_for(
    record: ConsentRecord, kind: OutputKind = OutputKind.GENERATION, image_bytes: bytes = _PNG
) -> Output:
    """A pending output of the record's subject with an encrypted image, as a finished job leaves it."""
    job = generation_job_for(record) if kind == OutputKind.GENERATION else edit_job_for(record)
    image = actions.store_subject_file(
        subject=job.subject,
        kind=AssetKind.OUTPUT,
        data=image_bytes,
        content_type="image/png",
        extension="png",
    )
    now = timezone.now()
    return Output.objects.for_tenant(record.tenant).create(
        subject=job.subject,
        job=job,
        identity_model=job.identity_model,
        kind=kind,
        status_changed_at=now,
        image=image,
        prompt="a photo of <sks> person",
        seed=0 if kind == OutputKind.GENERATION else None,
        created_at=now,
    )


def status_now(output: Output) -> str:
    """The output's status as stored now (what another request would read)."""
    return Output.objects.for_tenant(output.tenant).get(pk=output.pk).status


@isolation_factory(Output)
def make_output(tenant: Tenant) -> Output:
    return output_for(make_record(tenant))


@isolation_factory(Release)
def make_release(tenant: Tenant) -> Release:
    """A registry row as create_release leaves it, written directly: its file is the output's own image
    stored as a `release` file (no stamping, no signing: the routes only look it up and serve it)."""
    output = make_output(tenant)
    reviewer = User.objects.create_user(username=f"approver-{output.pk}")
    Output.objects.for_tenant(tenant).filter(pk=output.pk).update(status="approved", decided_by=reviewer)
    record = output.job.consent_record
    assert record is not None
    file = actions.store_subject_file(
        subject=output.subject, kind=AssetKind.RELEASE, data=_PNG, content_type="image/png", extension="png"
    )
    return Release.objects.for_tenant(tenant).create(
        file=file,
        output=output,
        subject=output.subject,
        kind=output.kind,
        purpose="generate_images",
        consent_record=record,
        consent_text_sha256=record.template_sha256,
        campaign="Spring 2027",
        channels=["web"],
        territories=["US"],
        ends_at=timezone.localdate(),
        approver=reviewer,
        created_by=reviewer,
        created_at=timezone.now(),
        sha256=hashlib.sha256(_PNG).hexdigest(),
        width=16,
        height=16,
        mime_type="image/png",
        clearance={},
    )
