"""Isolation-test factories for the consent models: each makes a real object through consent.actions."""

from __future__ import annotations

import itertools
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from consent import actions
from consent.models import (
    Asset,
    AssetKind,
    ConsentLink,
    ConsentRecord,
    ConsentTemplate,
    DeletionCertificate,
    ErasureRequest,
    Purpose,
    RetentionSchedule,
    Subject,
)
from tenancy.models import Membership, Role, Tenant
from tests.fixtures.consent import NamedBytes
from tests.isolation import isolation_factory

from . import photos
from .mailbox import IssuedLink, issued

_numbers = itertools.count(1)


@isolation_factory(Subject)
def make_subject(tenant: Tenant) -> Subject:
    number = next(_numbers)
    return actions.create_subject(
        actor=None,
        tenant=tenant,
        display_name=f"Isolated subject {number}",
        contact_email=f"isolated-{number}@example.test",
    )


@isolation_factory(ConsentTemplate)
def make_template(tenant: Tenant) -> ConsentTemplate:
    return actions.publish_consent_template(
        actor=None, tenant=tenant, name="Isolation consent", body=f"I agree, text {next(_numbers)}."
    )


@isolation_factory(RetentionSchedule)
def make_schedule(tenant: Tenant) -> RetentionSchedule:
    return actions.publish_retention_schedule(
        actor=None,
        tenant=tenant,
        title="Texas CUBI",
        years_after_last_interaction=3,
        days_after_purpose_satisfied=365,
    )


def _issue(subject: Subject) -> IssuedLink:
    link = actions.send_consent_link(
        actor=None,
        subject=subject,
        template=make_template(subject.tenant),
        purposes=[purpose.value for purpose in Purpose],
        intended_uses="Isolation test campaign portraits on the website.",
        identity_verification="ID checked in person",
        expires_at=timezone.now() + timedelta(days=30),
        site_url="http://testserver",
    )
    return issued(link)


@isolation_factory(ConsentLink)
def make_link(tenant: Tenant) -> ConsentLink:
    return _issue(make_subject(tenant)).link


def _signed(tenant: Tenant) -> tuple[ConsentRecord, str]:
    issued = _issue(make_subject(tenant))
    record = actions.sign_consent(
        token=issued.token,
        purposes=issued.link.purposes_offered,
        full_name="Isolated Person",
        representation="none",
    )
    return record, issued.token


@isolation_factory(ConsentRecord)
def make_record(tenant: Tenant) -> ConsentRecord:
    return _signed(tenant)[0]


@isolation_factory(Asset)
def make_asset(tenant: Tenant) -> Asset:
    """A photo (the enrollment photo): every asset route serves it, and the photo routes only take photos."""
    record, _ = _signed(tenant)
    return actions.set_enrollment_photo(
        actor=None,
        subject=record.subject,
        upload=NamedBytes(photos.photo_bytes("obama.jpg"), "isolation.jpg"),
    )


@isolation_factory(DeletionCertificate)
def make_certificate(tenant: Tenant) -> DeletionCertificate:
    record, token = _signed(tenant)
    actions.store_subject_file(
        subject=record.subject, kind=AssetKind.CROP, data=b"crop", content_type="image/png", extension="png"
    )
    actions.revoke_via_link(token=token)
    certificate = DeletionCertificate.objects.for_tenant(tenant).get(subject=record.subject)
    done = actions.complete_erasure(certificate.pk)
    assert done is not None
    return done


@isolation_factory(ErasureRequest)
def make_erasure_request(tenant: Tenant) -> ErasureRequest:
    """Staff mark the purpose satisfied: a pending request that an admin may confirm or decline."""
    record, _ = _signed(tenant)
    staff = get_user_model().objects.create_user(username=f"isolation-staff-{next(_numbers)}")
    Membership.objects.create(user=staff, tenant=tenant, role=Role.STAFF)
    request = actions.mark_purpose_satisfied(actor=staff, subject=record.subject)
    assert request is not None
    return request
