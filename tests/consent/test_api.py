"""The consent API: the same actions as the dashboard, with JSON and multipart."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from consent import actions
from consent.models import ConsentLink, ConsentRecord, DeletionCertificate, Purpose

from . import photos
from .mailbox import delivered_url

pytestmark = pytest.mark.django_db


def _file(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="image/jpeg")


def test_api_flow_from_subject_to_certificate(tenant, admin, staff, legal, api_client_for) -> None:
    as_admin, as_staff, as_legal = (api_client_for(user, tenant) for user in (admin, staff, legal))

    created = as_staff.post(
        "/api/v1/subjects/",
        {"display_name": "Grace Example", "contact_email": "grace@example.test"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    subject_id = created.json()["id"]
    assert created.json()["status"] == "no_consent" and created.json()["retention_version"] == 1

    assert (
        as_staff.post("/api/v1/consent-templates/", {"name": "T", "body": "x"}, format="json").status_code
        == 403
    )
    template = as_admin.post(
        "/api/v1/consent-templates/",
        {"name": "Likeness consent", "body": "I agree to what I tick."},
        format="json",
    ).json()
    assert template["version"] == 1 and len(template["sha256"]) == 64

    link = as_staff.post(
        f"/api/v1/subjects/{subject_id}/send-link/",
        {
            "template": template["id"],
            "purposes": [Purpose.TRAIN_IDENTITY.value, Purpose.EDIT_PHOTOS.value],
            "intended_uses": "Editing catalogue photos for the 2027 web shop only.",
            "identity_verification": "Employee badge checked",
            "territories": ["EU"],
        },
        format="json",
    )
    assert link.status_code == 201, link.json()
    assert link.json()["delivery"] == "delivered" and "url" not in link.json()
    url = delivered_url(ConsentLink.objects.for_tenant(tenant).get(pk=link.json()["id"]))

    checks = {c["purpose"]: c for c in as_staff.get(f"/api/v1/subjects/{subject_id}/consent-check/").json()}
    assert not checks["train_identity"]["allowed"] and checks["train_identity"]["reason"] == "missing"

    Client().post(
        url,
        {
            "action": "sign",
            "purposes": ["edit_photos"],
            "full_name": "Grace Example",
            "representation": "none",
        },
    )
    checks = {c["purpose"]: c for c in as_staff.get(f"/api/v1/subjects/{subject_id}/consent-check/").json()}
    assert checks["edit_photos"]["allowed"] and not checks["train_identity"]["allowed"]
    one = as_staff.get(f"/api/v1/subjects/{subject_id}/consent-check/?purpose=generate_images").json()
    assert one == [
        {
            "purpose": "generate_images",
            "allowed": False,
            "record": None,
            "reason": "missing",
            "message": "Grace Example has not consented to generating new images.",
        }
    ]

    enrollment = as_staff.post(
        f"/api/v1/subjects/{subject_id}/enrollment-photo/",
        {"enrollment": _file("me.jpg", photos.photo_bytes("obama.jpg"))},
        format="multipart",
    )
    assert enrollment.status_code == 201, enrollment.json()
    report = as_staff.post(
        f"/api/v1/subjects/{subject_id}/reference-photos/",
        {"photos": [_file("a.jpg", photos.photo_bytes("obama2.jpg")), _file("b.jpg", b"")]},
        format="multipart",
    ).json()
    assert [a["label"] for a in report["accepted"]] == ["a.jpg"]
    assert report["rejected"] == [
        {"name": "b.jpg", "code": "empty", "message": "The file is empty (0 bytes)."}
    ]
    assets = as_staff.get("/api/v1/assets/").json()["results"]
    assert {a["kind"] for a in assets} == {"enrollment_photo", "reference_photo"}  # embeddings never listed
    download = as_staff.get(f"/api/v1/assets/{report['accepted'][0]['id']}/download/")
    assert download.status_code == 200 and download.content[:3] == b"\xff\xd8\xff"
    # Legal reviewers never see photos: the asset is outside their queryset altogether.
    assert as_legal.get(f"/api/v1/assets/{report['accepted'][0]['id']}/download/").status_code == 404

    record = ConsentRecord.objects.for_tenant(tenant).get()
    revoked = as_staff.post(
        f"/api/v1/subjects/{subject_id}/revoke/",
        {"record": record.pk, "received_via": "email", "reason": "Subject wrote on 5 June"},
        format="json",
    )
    assert revoked.status_code == 201 and revoked.json()["revocation"]["channel"] == "staff_recorded"
    # Recorded by staff: the erasure waits for an admin (the two-person rule), who confirms it.
    pending = revoked.json()["revocation"]["erasure_request"]
    assert pending["state"] == "pending" and not DeletionCertificate.objects.for_tenant(tenant).exists()
    assert as_admin.post(f"/api/v1/erasure-requests/{pending['id']}/confirm/").status_code == 200
    certificate = DeletionCertificate.objects.for_tenant(tenant).get()
    actions.complete_erasure(certificate.pk)

    assert as_staff.get("/api/v1/deletion-certificates/").json()["results"] == []  # not for staff
    listed = as_legal.get("/api/v1/deletion-certificates/").json()["results"]
    assert listed[0]["certificate"] == str(certificate.public_id) and listed[0]["key_destroyed"] is True
    assert listed[0]["files_by_kind"] == {"enrollment_photo": 1, "face_embedding": 2, "reference_photo": 1}
    rows = list(
        csv.DictReader(
            io.StringIO(as_legal.get("/api/v1/deletion-certificates/export-csv/").content.decode())
        )
    )
    assert rows[0]["subject_id"] == str(subject_id)
    history = as_legal.get(f"/api/v1/subjects/{subject_id}/history/").json()
    assert history["consent_records"][0]["revocation_reason"] == "Subject wrote on 5 June"
    assert as_legal.post("/api/v1/subjects/", {"display_name": "x"}, format="json").status_code == 403


def test_api_errors_say_why(tenant, staff, make_subject, sign, api_client_for) -> None:
    client = api_client_for(staff, tenant)
    subject = make_subject()
    no_consent = client.post(
        f"/api/v1/subjects/{subject.pk}/enrollment-photo/",
        {"enrollment": _file("me.jpg", photos.photo_bytes("obama.jpg"))},
        format="multipart",
    )
    assert no_consent.status_code == 409 and no_consent.json()["reason"] == "missing"
    sign(subject)
    two = client.post(
        f"/api/v1/subjects/{subject.pk}/enrollment-photo/",
        {"enrollment": _file("two.jpg", photos.photo_bytes("two_people.jpg"))},
        format="multipart",
    )
    assert two.status_code == 400 and two.json()["code"] == "multiple_faces"
    bad_link = client.post(
        f"/api/v1/subjects/{subject.pk}/send-link/",
        {
            "template": 999999,
            "purposes": ["train_identity"],
            "intended_uses": "x",
            "identity_verification": "y",
        },
        format="json",
    )
    assert bad_link.status_code == 400 and "template" in bad_link.json()
