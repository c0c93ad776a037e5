"""Releases (editing.releases): the gate at creation and at every download, scope checks, the stamped
file's manifest and the registry's signed clearance, downloads audited with the file's hash."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from audit.models import AuditEntry
from consent import actions as consent_actions
from consent import vault
from consent.models import AssetKind, ConsentRecord, Purpose, Subject
from editing import review
from editing.models import Output, OutputKind, Release, ReleaseDownload
from editing.provenance import c2pa
from editing.releases import actions, clearance, gate
from tenancy.models import Role
from tests.editing.isolation_factories import output_for
from tests.editing.releases import approved_output, pixels, release_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("release_signing")]


def _in(days: int) -> datetime.date:
    return timezone.localdate() + datetime.timedelta(days=days)


def _release(staff: Any, output: Output, **scope: Any) -> Release:
    return release_of(staff, output, **{"ends_at": _in(30), **scope})


def test_a_release_is_stamped_stored_as_a_subject_file_signed_and_audited(
    record: ConsentRecord, staff: Any, release_signing: Path
) -> None:
    output = approved_output(record, staff)

    release = _release(staff, output, channels=["web", "social"], territories=["EU"])

    assert release.pk < 2**32
    assert (release.subject, release.consent_record, release.approver, release.created_by) == (
        record.subject,
        record,
        staff,
        staff,
    )
    assert (release.kind, release.purpose, release.consent_text_sha256) == (
        "generation",
        "generate_images",
        record.template_sha256,
    )
    assert release.file is not None and release.file.kind == AssetKind.RELEASE
    released = vault.read_asset(release.file)
    assert hashlib.sha256(released).hexdigest() == release.sha256
    assert (release.width, release.height, release.mime_type) == (512, 512, "image/png")

    report = c2pa.read(released, trust_anchors_pem=(release_signing / "root.pem").read_bytes())
    assert report.valid and report.trusted, report.codes
    assert report.actions == ("c2pa.created",)
    assert report.digital_source_type == c2pa.TRAINED_ALGORITHMIC_MEDIA
    expected = {
        "release_id": str(release.pk),
        "tenant_id": str(record.tenant_id),
        "consent_record_id": str(record.pk),
        "consent_text_sha256": record.template_sha256,
        "purposes": ["generate_images"],
        "channels": ["web", "social"],
        "territories": ["EU"],
        "ends_at": _in(30).isoformat(),
        "approver_id": str(staff.pk),
    }
    assert report.clearance == expected == release.clearance
    # The registry's copy verifies with the chain; any change to it does not.
    assert clearance.verify(release.clearance, release.clearance_signature, release.clearance_chain)
    assert not clearance.verify(
        {**release.clearance, "ends_at": _in(400).isoformat()},
        release.clearance_signature,
        release.clearance_chain,
    )

    tampered = bytearray(released)
    tampered[len(tampered) // 2] ^= 0x01
    assert not c2pa.read(bytes(tampered)).valid

    entry = AuditEntry.objects.for_tenant(record.tenant).get(action="release.created")
    assert entry.actor == staff and entry.subject_ref == record.subject_id
    assert entry.payload == {
        "subject_id": record.subject_id,
        "output_id": output.pk,
        "release_id": release.pk,
        "consent_record_id": record.pk,
        "campaign": "Spring 2027",
        "channels": ["web", "social"],
        "territories": ["EU"],
        "ends_at": _in(30).isoformat(),
        "sha256": release.sha256,
    }


def test_an_edit_is_released_with_opened_and_edited_and_the_source_photo_by_hash_only(
    record: ConsentRecord, staff: Any
) -> None:
    output = output_for(record, OutputKind.EDIT)
    photo = b"the subject's own photo, encrypted"
    source = consent_actions.store_subject_file(
        subject=record.subject,
        kind=AssetKind.SOURCE_PHOTO,
        data=photo,
        content_type="image/jpeg",
        extension="jpg",
    )
    Output.objects.for_tenant(record.tenant).filter(pk=output.pk).update(source_photo=source)
    review.approve_outputs(actor=staff, tenant=record.tenant, output_ids=[output.pk])

    release = _release(staff, Output.objects.for_tenant(record.tenant).get(pk=output.pk))

    assert release.purpose == "edit_photos"
    assert release.file is not None
    report = c2pa.read(vault.read_asset(release.file))
    assert report.valid, report.codes
    assert report.actions == ("c2pa.opened", "c2pa.edited")
    assert report.digital_source_type == c2pa.COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
    assert report.ingredient_sha256 == (hashlib.sha256(photo).hexdigest(),)


def test_the_tenant_setting_puts_the_visible_label_on_released_files(
    record: ConsentRecord, staff: Any
) -> None:
    output = approved_output(record, staff)
    record.tenant.settings = {"require_visible_ai_label": False}
    record.tenant.save(update_fields=["settings"])
    plain = _release(staff, output)
    record.tenant.settings = {"require_visible_ai_label": True}
    record.tenant.save(update_fields=["settings"])
    labelled = _release(staff, Output.objects.for_tenant(record.tenant).get(pk=output.pk))
    assert plain.file is not None and labelled.file is not None
    corner = (slice(-40, None), slice(-160, None))
    difference = abs(
        pixels(vault.read_asset(plain.file))[corner] - pixels(vault.read_asset(labelled.file))[corner]
    )
    # The label is a dark box with white text; the watermark alone moves pixels by a few levels.
    assert difference.mean() > 30


# --- the gate ------------------------------------------------------------------------------------------
def _veto(output: Output, record: ConsentRecord) -> None:
    review.veto_output(link=record.link, output_id=output.pk)


def _reject(output: Output, record: ConsentRecord, staff: Any) -> None:
    review.reject_outputs(actor=staff, tenant=record.tenant, output_ids=[output.pk], reason="Blurred.")


def _revoke(record: ConsentRecord, staff: Any) -> None:
    # Recorded by staff, the erasure waits for an admin (two-person rule): the output stays approved.
    consent_actions.record_revocation(actor=staff, record=record, reason="Phone call", received_via="phone")


def _erase(record: ConsentRecord, admin: Any) -> None:
    consent_actions.erase_subject(actor=admin, subject=record.subject, reason="The subject asked by e-mail.")


@pytest.mark.parametrize(
    ("state", "code", "words"),
    [
        ("pending", "output_pending_review", "pending review"),
        ("rejected", "output_rejected", "rejected"),
        ("vetoed", "output_vetoed", "vetoed"),
        ("withdrawn", "output_withdrawn", "erased"),
        ("consent_revoked", "consent_revoked", "revoked their consent to generating new images"),
        ("purpose_not_consented", "consent_missing", "has not consented to generating new images"),
    ],
)
def test_the_gate_refuses_creation_with_a_reason_and_writes_nothing(
    state: str,
    code: str,
    words: str,
    tenant: Any,
    make_subject: Callable[..., Subject],
    sign: Callable[..., ConsentRecord],
    staff: Any,
    admin: Any,
) -> None:
    purposes = [Purpose.EDIT_PHOTOS.value] if state == "purpose_not_consented" else None
    record = sign(make_subject("Maya Example"), purposes)
    output = output_for(record, OutputKind.GENERATION)
    if state != "pending":
        if state == "rejected":
            _reject(output, record, staff)
        elif state == "purpose_not_consented":
            Output.objects.for_tenant(tenant).filter(pk=output.pk).update(status="approved", decided_by=staff)
        else:
            review.approve_outputs(actor=staff, tenant=tenant, output_ids=[output.pk])
    if state == "vetoed":
        _veto(output, record)
    elif state == "withdrawn":
        _erase(record, admin)
    elif state == "consent_revoked":
        _revoke(record, staff)
    output = Output.objects.for_tenant(tenant).get(pk=output.pk)

    with pytest.raises(gate.ReleaseRefusedError) as refused:
        _release(staff, output)

    assert refused.value.code == code and words in refused.value.message
    assert not Release.objects.for_tenant(tenant).exists()
    assert not AuditEntry.objects.for_tenant(tenant).filter(action="release.created").exists()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("vetoed", "output_vetoed"),
        ("consent_revoked", "consent_revoked"),
        ("own_record_revoked", "consent_revoked"),
        ("past_end_date", "release_expired"),
        ("erased", "output_withdrawn"),
    ],
)
def test_the_gate_runs_again_at_every_download(
    change: str,
    code: str,
    record: ConsentRecord,
    staff: Any,
    admin: Any,
    sign: Callable[..., ConsentRecord],
) -> None:
    output = approved_output(record, staff)
    release = _release(staff, output)
    actions.download_release(actor=staff, release=release)
    if change == "vetoed":
        _veto(output, record)
    elif change == "consent_revoked":
        _revoke(record, staff)
    elif change == "own_record_revoked":
        # A newer consent covers the purpose, but the release was cleared under the one now revoked.
        sign(record.subject)
        _revoke(record, staff)
    elif change == "past_end_date":
        Release.objects.for_tenant(record.tenant).filter(pk=release.pk).update(ends_at=_in(-1))
    elif change == "erased":
        _erase(record, admin)
        consent_actions.complete_erasure(record.subject.deletion_certificates.get().pk)

    with pytest.raises(gate.ReleaseRefusedError) as refused:
        actions.download_release(actor=staff, release=release)
    if change == "erased":
        # The file went with the subject's key and files; the registry row stays as the history.
        release.refresh_from_db()
        assert release.file_id is None and release.clearance["release_id"] == str(release.pk)
        assert not record.subject.assets.filter(kind=AssetKind.RELEASE).exists()

    assert refused.value.code == code, refused.value.message
    assert ReleaseDownload.objects.for_tenant(record.tenant).count() == 1
    assert AuditEntry.objects.for_tenant(record.tenant).filter(action="release.downloaded").count() == 1


# --- scope ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scope", "field", "words"),
    [
        ({"campaign": "  "}, "campaign", "Name the campaign"),
        ({"campaign": "x" * 201}, "campaign", "at most 200"),
        ({"channels": []}, "channels", "at least one"),
        (
            {"channels": ["web", "print"]},
            "channels",
            "does not cover the channels print: it allows social, web",
        ),
        ({"territories": ["US", "JP"]}, "territories", "does not cover the territories JP"),
        ({"territories": [f"T{i}" for i in range(51)]}, "territories", "at most 50"),
        ({"channels": ["w" * 101]}, "channels", "at most 100 characters"),
        ({"ends_at": datetime.date(2020, 1, 1)}, "ends_at", "in the past"),
        ({"ends_at": datetime.date(2100, 1, 1)}, "ends_at", "after the consent expires"),
    ],
)
def test_a_release_out_of_scope_is_refused_with_the_value_and_writes_nothing(
    scope: dict[str, Any], field: str, words: str, record: ConsentRecord, staff: Any
) -> None:
    output = approved_output(record, staff)
    with pytest.raises(actions.ReleaseScopeError) as refused:
        _release(staff, output, **scope)
    assert refused.value.field == field and words in refused.value.message
    assert not Release.objects.for_tenant(record.tenant).exists()
    assert not record.subject.assets.filter(kind=AssetKind.RELEASE).exists()


# --- downloads -----------------------------------------------------------------------------------------
def test_a_download_is_recorded_and_audited_with_the_files_hash(
    record: ConsentRecord, staff: Any, member: Callable[..., Any]
) -> None:
    release = _release(staff, approved_output(record, staff))

    released = actions.download_release(actor=staff, release=release)

    assert released.sha256 == release.sha256 == hashlib.sha256(released.data).hexdigest()
    assert released.filename == f"likeness-release-{release.pk}.png"
    row = ReleaseDownload.objects.for_tenant(record.tenant).get()
    assert (row.release, row.downloaded_by, row.sha256) == (release, staff, release.sha256)
    entry = AuditEntry.objects.for_tenant(record.tenant).get(action="release.downloaded")
    assert entry.actor == staff and entry.subject_ref == record.subject_id
    assert entry.payload == {
        "subject_id": record.subject_id,
        "release_id": release.pk,
        "sha256": release.sha256,
    }

    # Legal reviewers read the registry, never the file; nor may they create a release.
    reviewer = member(record.tenant, Role.LEGAL_REVIEWER)
    with pytest.raises(PermissionDenied):
        actions.download_release(actor=reviewer, release=release)
    with pytest.raises(PermissionDenied):
        _release(reviewer, release.output)
    assert ReleaseDownload.objects.for_tenant(record.tenant).count() == 1
