"""Isolation-test factories for the job machinery's models."""

from __future__ import annotations

from django.utils import timezone

from tenancy.models import Tenant
from tests.consent.isolation_factories import make_record
from tests.isolation import isolation_factory
from training.models import Job, JobStatus


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
