"""Revocation erases everything: files, rows, the key; a copy made before is unreadable afterwards."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied

from audit.models import AuditEntry
from consent import actions, vault
from consent.actions import ConsentReason, ConsentRequired
from consent.erasure import ErasureHook, register_erasure_hook, unregister_erasure_hook
from consent.models import (
    Asset,
    AssetKind,
    DeletionCertificate,
    ErasureTrigger,
    Purpose,
    SubjectKey,
)
from consent.storage import subject_prefix
from tests.fixtures.consent import ALL_PURPOSES, NamedBytes

from . import photos
from .scans import files_under, rows_mentioning

pytestmark = pytest.mark.django_db

DERIVED_KINDS = [AssetKind.CROP, AssetKind.MASK, AssetKind.LATENT_CACHE, AssetKind.ADAPTER, AssetKind.OUTPUT]


class RecordingHook:
    """A stand-in for the training/editing apps' hooks: remembers who it was called for."""

    def __init__(self) -> None:
        self.cancelled: list[int] = []
        self.withdrawn: list[int] = []

    def cancel_jobs(self, subject):
        self.cancelled.append(subject.pk)
        return [f"job-of-{subject.pk}"]

    def withdraw_outputs(self, subject):
        self.withdrawn.append(subject.pk)
        return [f"output-of-{subject.pk}"]


@pytest.fixture
def hook():
    recorder = RecordingHook()
    register_erasure_hook(
        ErasureHook(
            name="test.app", cancel_jobs=recorder.cancel_jobs, withdraw_outputs=recorder.withdraw_outputs
        )
    )
    yield recorder
    unregister_erasure_hook("test.app")


def _fill(subject, staff) -> list[Asset]:
    """Reference photos through intake, and one file of every derived kind the way other apps store them."""
    report = actions.upload_reference_photos(
        actor=staff,
        subject=subject,
        uploads=[
            NamedBytes(photos.photo_bytes("obama2.jpg"), "r1.jpg"),
            NamedBytes(photos.photo_bytes("obama3.jpg"), "r2.jpg"),
        ],
    )
    assert len(report.accepted) == 2, report.rejected
    for kind in DERIVED_KINDS:
        actions.store_subject_file(
            subject=subject,
            kind=kind,
            data=f"{kind} bytes".encode() * 50,
            content_type="application/octet-stream",
            extension="bin",
        )
    return list(Asset.objects.for_tenant(subject.tenant).filter(subject=subject))


def test_revocation_on_the_link_page_erases_everything(
    enrolled_subject, staff, link_tokens, storage_root, hook
) -> None:
    subject = enrolled_subject
    assets = _fill(subject, staff)
    assert {asset.kind for asset in assets} == {
        AssetKind.ENROLLMENT_PHOTO,
        AssetKind.REFERENCE_PHOTO,
        AssetKind.FACE_EMBEDDING,
        *DERIVED_KINDS,
    }
    names = [asset.storage_name for asset in assets]
    backup = (storage_root / assets[1].storage_name).read_bytes()  # a copy, as a backup would hold it
    assert vault.open_envelope(subject.tenant_id, subject.pk, backup) == vault.read_asset(assets[1])
    key_id = SubjectKey.objects.for_tenant(subject.tenant).get(subject=subject).key_id
    record = subject.records.get()

    revocation = actions.revoke_via_link(token=link_tokens[record.pk], ip="198.51.100.2")

    # The key went in the revocation's own transaction, before any file.
    certificate = DeletionCertificate.objects.for_tenant(subject.tenant).get(subject=subject)
    assert revocation.record == record
    assert certificate.trigger == ErasureTrigger.REVOCATION and certificate.completed_at is None
    assert certificate.key_id == key_id and certificate.key_destroyed_at is not None
    assert not SubjectKey.dangerously_unscoped.filter(key_id=key_id).exists()
    with pytest.raises(vault.KeyDestroyedError):
        vault.read_asset(assets[1])

    actions.complete_erasure(certificate.pk)  # what the Celery task runs

    # Storage root: nothing of the subject is left (nothing at all: it was the only subject).
    assert files_under(storage_root) == []
    # Database: no asset row, and no column of any table names one of the files.
    assert not Asset.objects.for_tenant(subject.tenant).filter(subject=subject).exists()
    assert rows_mentioning([*names, subject_prefix(subject.tenant_id, subject.pk)]) == []
    subject.refresh_from_db()
    assert subject.enrollment_photo is None
    # The backup copy can no longer be opened by anyone.
    with pytest.raises(vault.KeyDestroyedError):
        vault.open_envelope(subject.tenant_id, subject.pk, backup)

    certificate.refresh_from_db()
    assert certificate.completed_at is not None and certificate.key_destroyed_at <= certificate.completed_at
    assert sorted(certificate.file_ids) == sorted(asset.pk for asset in assets)
    assert certificate.destroyed_counts == {
        "adapter": 1,
        "crop": 1,
        "enrollment_photo": 1,
        "face_embedding": 3,
        "latent_cache": 1,
        "mask": 1,
        "output": 1,
        "reference_photo": 2,
    }
    assert certificate.cancelled_jobs == [f"test.app:job-of-{subject.pk}"]
    assert certificate.withdrawn_outputs == [f"test.app:output-of-{subject.pk}"]

    # ID-only audit trail: the erasure is recorded, and no name, email or file name is in it.
    entries = list(AuditEntry.objects.for_tenant(subject.tenant).order_by("seq"))
    actions_logged = [entry.action for entry in entries]
    for expected in ("consent.revoked", "erasure.started", "subject_key.destroyed", "erasure.completed"):
        assert actions_logged.count(expected) == 1
    dumped = json.dumps([entry.payload for entry in entries])
    assert (
        subject.display_name not in dumped and subject.contact_email not in dumped and "r1.jpg" not in dumped
    )

    # Idempotent: finishing again changes nothing and logs nothing.
    seq = entries[-1].seq
    actions.complete_erasure(certificate.pk)
    assert AuditEntry.objects.for_tenant(subject.tenant).order_by("-seq").first().seq == seq
    assert hook.cancelled == [subject.pk]

    # The gate now refuses, saying why.
    with pytest.raises(ConsentRequired) as refused:
        actions.require(subject, Purpose.TRAIN_IDENTITY)
    assert refused.value.reason == ConsentReason.REVOKED


def test_a_new_consent_after_erasure_gets_a_new_key_and_old_copies_stay_dead(
    enrolled_subject, admin, sign, storage_root
) -> None:
    subject = enrolled_subject
    photo = subject.enrollment_photo
    backup = (storage_root / photo.storage_name).read_bytes()
    # Recorded by an admin, so the erasure begins at once (staff's would wait: test_erasure_requests.py).
    actions.record_revocation(
        actor=admin, record=subject.records.get(), reason="Email of 2 June", received_via="email"
    )
    actions.complete_erasure(DeletionCertificate.objects.for_tenant(subject.tenant).get(subject=subject).pk)

    sign(subject)
    actions.store_subject_file(
        subject=subject, kind=AssetKind.CROP, data=b"new crop", content_type="image/png", extension="png"
    )
    new_key = SubjectKey.objects.for_tenant(subject.tenant).get(subject=subject)
    assert new_key.key_id != DeletionCertificate.objects.for_tenant(subject.tenant).get().key_id
    with pytest.raises(vault.KeyDestroyedError):
        vault.open_envelope(subject.tenant_id, subject.pk, backup)


def test_revoking_one_of_two_consents_keeps_the_data(make_subject, sign, staff) -> None:
    subject = make_subject()
    first = sign(subject, [Purpose.TRAIN_IDENTITY.value])
    sign(subject, ALL_PURPOSES)
    actions.store_subject_file(
        subject=subject, kind=AssetKind.CROP, data=b"crop", content_type="image/png", extension="png"
    )
    actions.record_revocation(actor=staff, record=first, reason="Narrowing consent", received_via="phone")
    assert not DeletionCertificate.objects.for_tenant(subject.tenant).exists()
    assert SubjectKey.objects.for_tenant(subject.tenant).filter(subject=subject).exists()


def test_staff_revocation_needs_a_reason_and_the_permission(enrolled_subject, staff, legal) -> None:
    record = enrolled_subject.records.get()
    with pytest.raises(actions.ConsentActionError, match="how the withdrawal was received"):
        actions.record_revocation(actor=staff, record=record, reason="", received_via="email")
    with pytest.raises(PermissionDenied):
        actions.record_revocation(actor=legal, record=record, reason="asked", received_via="email")
    assert not DeletionCertificate.objects.for_tenant(enrolled_subject.tenant).exists()


def test_a_double_revocation_is_one_revocation(enrolled_subject, link_tokens) -> None:
    record = enrolled_subject.records.get()
    token = link_tokens[record.pk]
    first = actions.revoke_via_link(token=token)
    assert actions.revoke_via_link(token=token) == first
    assert DeletionCertificate.objects.for_tenant(enrolled_subject.tenant).count() == 1


def test_admin_erasure_on_request(enrolled_subject, admin, staff, storage_root) -> None:
    with pytest.raises(PermissionDenied):
        actions.erase_subject(actor=staff, subject=enrolled_subject, reason="Art. 17 request")
    certificate = actions.erase_subject(
        actor=admin, subject=enrolled_subject, reason="Art. 17 request of 1 July"
    )
    assert certificate is not None and certificate.trigger == ErasureTrigger.ADMIN
    actions.complete_erasure(certificate.pk)
    assert files_under(storage_root) == []
    # Nothing left to erase: a second request opens no second certificate.
    assert actions.erase_subject(actor=admin, subject=enrolled_subject, reason="again") is None
