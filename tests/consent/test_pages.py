"""The dashboard pages and the subject's link page, through Django's test client."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from PIL import Image

from audit.models import AuditEntry
from consent import actions
from consent.models import (
    AssetKind,
    ConsentLink,
    ConsentRecord,
    ConsentRevocation,
    ConsentTemplate,
    DeletionCertificate,
    Purpose,
    RevocationChannel,
    Subject,
    SubjectKey,
)
from tests.fixtures.consent import CONSENT_TEXT

from . import photos
from .mailbox import delivered_url

pytestmark = pytest.mark.django_db


def _upload(data: bytes, name: str, content_type: str = "image/jpeg"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type=content_type)


def test_staff_add_a_subject_and_send_a_link_the_subject_signs_and_revokes(
    tenant, staff, template, client_for
) -> None:
    client = client_for(staff, tenant)
    response = client.post(
        reverse("consent-subjects"),
        {"display_name": "Ada Example", "contact_email": "ada@example.test", "internal_reference": "C-17"},
    )
    subject = Subject.objects.for_tenant(tenant).get(display_name="Ada Example")
    assert response.status_code == 302 and response["Location"] == reverse(
        "consent-subject", args=[subject.pk]
    )
    assert "No consent" in client.get(reverse("consent-subjects")).content.decode()

    response = client.post(
        reverse("consent-subject-send-link", args=[subject.pk]),
        {
            "template": template.pk,
            "purposes": [Purpose.TRAIN_IDENTITY.value, Purpose.GENERATE_IMAGES.value],
            "intended_uses": "Portraits for the autumn catalogue, web and print, in 2027.",
            "channels": "web, print",
            "territories": "US; CA",
            "identity_verification": "Driving licence seen on a video call",
        },
    )
    link = ConsentLink.objects.for_tenant(tenant).get()
    assert response.status_code == 302 and response["Location"] == reverse("consent-link", args=[link.pk])
    # The link reaches the subject by e-mail only; staff are told it went, not what it is.
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ada@example.test"]
    url = delivered_url(link)
    assert "Consent link sent, not signed yet" in client.get(reverse("consent-subjects")).content.decode()

    subject_browser = Client(HTTP_USER_AGENT="SubjectPhone/1.0", REMOTE_ADDR="192.0.2.44")
    page = subject_browser.get(url)
    html = page.content.decode()
    assert page.status_code == 200 and page["Referrer-Policy"] == "same-origin"
    assert CONSENT_TEXT in html and template.sha256 in html
    assert subject.retention_schedule.statement in html
    boxes = re.findall(r'<input type="checkbox" name="purposes" value="([a-z_]+)"([^>]*)>', html)
    assert [value for value, _ in boxes] == ["generate_images", "train_identity"]
    assert all("checked" not in rest for _, rest in boxes)  # every purpose starts unticked

    # Ticking nothing signs nothing, and says saying no is fine.
    refused = subject_browser.post(
        url, {"action": "sign", "full_name": "Ada Example", "representation": "none"}
    )
    assert refused.status_code == 400 and "nothing was signed" in refused.content.decode()
    assert not ConsentRecord.objects.for_tenant(tenant).exists()

    signed = subject_browser.post(
        url,
        {
            "action": "sign",
            "purposes": [Purpose.TRAIN_IDENTITY.value],
            "full_name": "Ada Q. Example",
            "representation": "union",
            "representation_detail": "SAG-AFTRA",
        },
    )
    assert signed.status_code == 302
    record = ConsentRecord.objects.for_tenant(tenant).get()
    assert record.purposes == ["train_identity"]
    assert (record.signer_full_name, record.signer_ip, record.signer_user_agent) == (
        "Ada Q. Example",
        "192.0.2.44",
        "SubjectPhone/1.0",
    )
    assert record.channels == ["print", "web"] and record.territories == ["CA", "US"]
    assert record.representation == "union" and record.template_sha256 == template.sha256
    after = subject_browser.get(url).content.decode()
    assert 'id="signed"' in after and 'id="withdraw-link"' in after and 'name="purposes"' not in after

    # Withdrawing is a confirmation, then the act (a withdrawal posted to the page itself is sent there).
    withdraw_url = f"{url}withdraw/"
    assert subject_browser.post(url, {"action": "revoke"})["Location"] == withdraw_url.removeprefix(
        "http://testserver"
    )
    assert 'id="revoke"' in subject_browser.get(withdraw_url).content.decode()
    assert not ConsentRevocation.objects.for_tenant(tenant).exists()
    subject_browser.post(withdraw_url)
    assert record.revocation.channel == RevocationChannel.SUBJECT_LINK
    assert 'id="revoked"' in subject_browser.get(url).content.decode()
    # Nothing of the subject was stored yet, so there is nothing to erase: the status says revoked.
    assert "Consent revoked" in client.get(reverse("consent-subject", args=[subject.pk])).content.decode()
    assert not DeletionCertificate.objects.for_tenant(tenant).exists()


def test_a_forged_or_altered_link_is_a_404(make_subject, issue_link) -> None:
    issued = issue_link(make_subject())
    anonymous = Client()
    altered = anonymous.get(reverse("consent-sign", args=[issued.token[:-2] + "xx"]))
    assert altered.status_code == 404 and "not valid" in altered.content.decode()
    assert anonymous.get(reverse("consent-sign", args=["not-a-token"])).status_code == 404


def test_photo_page_reports_each_rejection_and_serves_only_decrypted_photos(
    tenant, staff, legal, make_subject, sign, client_for, storage_root
) -> None:
    subject = make_subject()
    sign(subject)
    client = client_for(staff, tenant)
    url = reverse("consent-subject-photos", args=[subject.pk])
    assert (
        client.post(url, {"enrollment": _upload(photos.photo_bytes("obama.jpg"), "me.jpg")}).status_code
        == 302
    )
    response = client.post(
        url,
        {
            "photos": [
                _upload(photos.photo_bytes("obama2.jpg"), "ok.jpg"),
                _upload(photos.png_html_polyglot(), "evil.jpg"),
                _upload(photos.photo_bytes("biden.jpg"), "other.jpg"),
            ]
        },
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert re.findall(r'data-code="([a-z_]+)"', html) == ["polyglot", "different_person"]
    assert "does not look like the same person" in html

    stored = subject.assets.filter(kind__in=[AssetKind.ENROLLMENT_PHOTO, AssetKind.REFERENCE_PHOTO])
    assert stored.count() == 2
    photo = stored.get(kind=AssetKind.REFERENCE_PHOTO)
    served = client.get(reverse("consent-asset-file", args=[photo.pk]))
    assert served.status_code == 200 and served["Content-Type"] == "image/jpeg"
    assert "no-store" in served["Cache-Control"] and "sandbox" in served["Content-Security-Policy"]
    assert (
        Image.open(io.BytesIO(served.content)).size
        == Image.open(io.BytesIO(photos.photo_bytes("obama2.jpg"))).size
    )
    embedding = photo.derived.get(kind=AssetKind.FACE_EMBEDDING)
    assert client.get(reverse("consent-asset-file", args=[embedding.pk])).status_code == 404
    assert client_for(legal, tenant).get(reverse("consent-asset-file", args=[photo.pk])).status_code == 403


def test_upload_without_consent_in_force_says_why(tenant, staff, make_subject, client_for) -> None:
    subject = make_subject()
    response = client_for(staff, tenant).post(
        reverse("consent-subject-photos", args=[subject.pk]),
        {"enrollment": _upload(photos.photo_bytes("obama.jpg"), "me.jpg")},
    )
    assert response.status_code == 400 and "no file of them can be stored" in response.content.decode()


def test_legal_reviewer_history_certificates_and_exports(
    tenant, staff, legal, enrolled_subject, client_for, link_tokens
) -> None:
    record = enrolled_subject.records.get()
    actions.revoke_via_link(token=link_tokens[record.pk])
    certificate = DeletionCertificate.objects.for_tenant(tenant).get()
    actions.complete_erasure(certificate.pk)
    reviewer = client_for(legal, tenant)

    history = reviewer.get(reverse("consent-subject-history", args=[enrolled_subject.pk])).content.decode()
    for fact in (record.template_sha256, record.signer_full_name, "revoked", record.link_token_sha256):
        assert fact.lower() in history.lower()
    document = json.loads(
        reviewer.get(reverse("consent-subject-history-json", args=[enrolled_subject.pk])).content
    )
    assert document["consent_records"][0]["id"] == record.pk
    assert document["consent_records"][0]["revoked_at"] is not None
    assert document["retention_schedule_at_collection"]["version"] == 1
    assert document["deletion_certificates"][0]["key_destroyed"] is True
    rows = list(
        csv.DictReader(
            io.StringIO(
                reviewer.get(
                    reverse("consent-subject-history-csv", args=[enrolled_subject.pk])
                ).content.decode()
            )
        )
    )
    assert rows[0]["template_sha256"] == record.template_sha256

    page = reviewer.get(reverse("consent-certificate", args=[certificate.pk])).content.decode()
    assert str(certificate.public_id) in page and 'id="key-destroyed">yes,' in page
    exported = json.loads(reviewer.get(reverse("consent-certificates-json")).content)
    assert exported["deletion_certificates"][0]["files_by_kind"] == {
        "enrollment_photo": 1,
        "face_embedding": 1,
    }
    listed = list(
        csv.DictReader(io.StringIO(reviewer.get(reverse("consent-certificates-csv")).content.decode()))
    )
    assert listed[0]["certificate"] == str(certificate.public_id) and listed[0]["key_destroyed"] == "True"
    single = json.loads(reviewer.get(reverse("consent-certificate-json", args=[certificate.pk])).content)
    assert single["subject_id"] == enrolled_subject.pk
    # Exports are audited; staff may not see certificates at all.
    assert AuditEntry.objects.for_tenant(tenant).filter(action="consent.exported").count() == 5
    assert client_for(staff, tenant).get(reverse("consent-certificates")).status_code == 403


def test_admin_publishes_versions_and_erases_on_request(
    tenant, admin, staff, enrolled_subject, client_for
) -> None:
    client = client_for(admin, tenant)
    client.post(
        reverse("consent-templates"), {"name": "Likeness consent", "body": "Second wording, clearer."}
    )
    assert [
        t.version for t in ConsentTemplate.objects.for_tenant(tenant).filter(name="Likeness consent")
    ] == [2, 1]
    response = client.post(
        reverse("consent-schedules"),
        {"title": "Texas CUBI", "years_after_last_interaction": 3, "days_after_purpose_satisfied": 365},
    )
    in_force = actions.schedule_in_force(tenant)
    assert response.status_code == 302 and in_force is not None and in_force.version == 2
    assert client_for(staff, tenant).post(reverse("consent-schedules"), {"title": "x"}).status_code == 403

    assert (
        client_for(staff, tenant)
        .get(reverse("consent-subject-erase", args=[enrolled_subject.pk]))
        .status_code
        == 403
    )
    response = client.post(
        reverse("consent-subject-erase", args=[enrolled_subject.pk]), {"reason": "Art. 17 letter"}
    )
    assert response.status_code == 302
    assert DeletionCertificate.objects.for_tenant(tenant).get().trigger == "admin"
    assert not SubjectKey.objects.for_tenant(tenant).exists()


def test_staff_record_a_revocation_received_by_letter(tenant, staff, enrolled_subject, client_for) -> None:
    record = enrolled_subject.records.get()
    client = client_for(staff, tenant)
    url = reverse("consent-record-revoke", args=[record.pk])
    assert client.post(url, {"received_via": "letter", "reason": ""}).status_code == 400
    assert client.post(url, {"received_via": "letter", "reason": "Letter dated 2 May"}).status_code == 302
    record.refresh_from_db()
    assert record.revocation.recorded_by == staff and record.revocation.reason == "Letter dated 2 May"
