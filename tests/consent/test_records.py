"""Consent evidence is write-once, and signing follows the link's terms."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from consent import actions
from consent.models import ConsentRecord, ConsentRevocation, ImmutableRecordError
from consent.status import subject_status
from tests.fixtures.consent import SITE_URL
from tests.support import requires_postgresql

pytestmark = pytest.mark.django_db


def test_records_cannot_be_edited_or_deleted_through_the_orm(make_subject, sign) -> None:
    record = sign(make_subject())
    record.purposes = ["train_identity", "generate_images", "edit_photos", "extra"]
    with pytest.raises(ImmutableRecordError):
        record.save()
    with pytest.raises(ImmutableRecordError):
        record.delete()
    schedule = record.retention_schedule
    schedule.years_after_last_interaction = 30
    with pytest.raises(ImmutableRecordError):
        schedule.save()


@requires_postgresql
def test_the_database_refuses_updates_and_deletes_of_evidence(make_subject, sign, staff) -> None:
    record = sign(make_subject())
    actions.record_revocation(actor=staff, record=record, reason="letter", received_via="post")
    for table, column in (
        ("consent_consentrecord", "signer_full_name"),
        ("consent_consentrevocation", "reason"),
        ("consent_consentlink", "intended_uses"),
        ("consent_linkdelivery", "sent_to"),
        ("consent_consenttemplate", "body"),
        ("consent_retentionschedule", "statement"),
    ):
        with (
            pytest.raises(DatabaseError, match="write-once"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"UPDATE {table} SET {column} = 'rewritten'")  # noqa: S608 (fixed table names)
        with (
            pytest.raises(DatabaseError, match="write-once"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"DELETE FROM {table}")  # noqa: S608
    assert ConsentRecord.objects.for_tenant(record.tenant).get().signer_full_name == record.signer_full_name


def test_signing_follows_the_link(make_subject, issue_link) -> None:
    subject = make_subject()
    issued = issue_link(subject, ["train_identity"])
    sign = dict(token=issued.token, full_name="Sam Example", representation="none")
    with pytest.raises(actions.ConsentActionError, match="not offered"):
        actions.sign_consent(purposes=["train_identity", "generate_images"], **sign)
    with pytest.raises(actions.ConsentActionError, match="could be signed until"):
        actions.sign_consent(
            purposes=["train_identity"], at=issued.link.sign_by + timedelta(seconds=1), **sign
        )
    with pytest.raises(actions.ConsentActionError, match="full name"):
        actions.sign_consent(purposes=["train_identity"], **{**sign, "full_name": " "})
    record = actions.sign_consent(purposes=["train_identity"], **sign)
    with pytest.raises(actions.ConsentActionError, match="already been used"):
        actions.sign_consent(purposes=["train_identity"], **sign)
    assert record.link_token_sha256 == issued.link.token_sha256 and issued.token not in str(record.__dict__)
    with pytest.raises(actions.InvalidLinkError):
        actions.sign_consent(purposes=["train_identity"], **{**sign, "token": issued.token + "x"})


def test_link_terms_are_validated_when_staff_send_it(make_subject, staff, template) -> None:
    subject = make_subject()
    base = dict(
        actor=staff,
        subject=subject,
        template=template,
        purposes=["train_identity"],
        intended_uses="Portraits for the spring catalogue on the web.",
        identity_verification="ID seen",
        site_url=SITE_URL,
    )
    with pytest.raises(actions.ConsentActionError, match="specifically"):
        actions.send_consent_link(**{**base, "intended_uses": "marketing"})
    with pytest.raises(actions.ConsentActionError, match="at least one purpose"):
        actions.send_consent_link(**{**base, "purposes": []})
    with pytest.raises(actions.ConsentActionError, match="must end after it starts"):
        actions.send_consent_link(**base, expires_at=timezone.now() - timedelta(days=1))


def test_status_follows_the_rows(make_subject, issue_link, sign, staff) -> None:
    subject = make_subject()
    assert subject_status(subject).code == "no_consent"
    issue_link(subject)
    assert subject_status(subject).code == "awaiting_signature"
    later = sign(subject, ["edit_photos"], valid_from=timezone.now() + timedelta(days=3))
    assert subject_status(subject).code == "not_yet_valid"
    assert subject_status(subject, at=later.valid_from + timedelta(hours=1)).purposes == ("edit_photos",)
    actions.record_revocation(actor=staff, record=later, reason="changed mind", received_via="phone")
    assert ConsentRevocation.objects.for_tenant(subject.tenant).count() == 1
    # The first link is still open for signing, so that is the state shown now.
    assert subject_status(subject).code == "awaiting_signature"


def test_nothing_is_stored_without_consent_in_force(make_subject, sign) -> None:
    subject = make_subject()
    file = dict(
        subject=subject, kind="adapter", data=b"w", content_type="application/octet-stream", extension="bin"
    )
    with pytest.raises(actions.ConsentRequired, match="no file of them can be stored"):
        actions.store_subject_file(**file)
    sign(subject, valid_from=timezone.now() + timedelta(days=1))  # signed, but not in force yet
    with pytest.raises(actions.ConsentRequired) as refused:
        actions.store_subject_file(**file)
    assert refused.value.reason == actions.ConsentReason.NOT_YET_VALID
    assert not subject.assets.exists()
