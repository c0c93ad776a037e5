"""The staff dashboard's consent pages: what they tell people, through Django's test client and Chromium."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from consent import actions
from consent.models import DeletionCertificate, ErasureRequest
from tests.consent.mailbox import issued
from tests.fixtures.consent import SITE_URL

pytestmark = pytest.mark.django_db


def _messages(response) -> str:
    """The flash messages of a followed response, as text (links reduced to their words)."""
    block = re.search(r'<ul class="messages">(.*?)</ul>', response.content.decode(), re.S)
    assert block, "no message shown"
    return re.sub(r"\s+", " ", block.group(1))


def _revoke(client, record, follow: bool = True):
    return client.post(
        reverse("consent-record-revoke", args=[record.pk]),
        {"received_via": "letter", "reason": "Letter dated 2 May"},
        follow=follow,
    )


def test_staff_revoking_the_last_consent_are_told_the_erasure_waits_with_its_deadline_and_request(
    tenant, staff, enrolled_subject, client_for
) -> None:
    shown = _messages(_revoke(client_for(staff, tenant), enrolled_subject.records.get()))
    request = ErasureRequest.objects.for_tenant(tenant).get()
    assert "stopped at once" in shown and "awaits a tenant admin" in shown
    assert request.deadline.strftime("%Y-%m-%d %H:%M") in shown
    assert f'href="{reverse("consent-erasure-requests")}">Erasure request #{request.pk}</a>' in shown


def test_an_admin_revoking_the_last_consent_is_told_files_are_destroyed_with_the_certificate_link(
    tenant, admin, enrolled_subject, client_for
) -> None:
    shown = _messages(_revoke(client_for(admin, tenant), enrolled_subject.records.get()))
    certificate = DeletionCertificate.objects.for_tenant(tenant).get()
    assert "key was destroyed" in shown and "being deleted" in shown
    assert f'href="{reverse("consent-certificate", args=[certificate.pk])}"' in shown
    assert str(certificate.public_id) in shown


def test_revoking_one_of_two_consents_says_nothing_is_erased_and_which_consent_remains(
    tenant, staff, enrolled_subject, sign, client_for
) -> None:
    first = enrolled_subject.records.get()
    second = sign(enrolled_subject, ["generate_images"])
    shown = _messages(_revoke(client_for(staff, tenant), first))
    assert f"Consent #{second.pk} is still in force" in shown and "nothing is erased" in shown
    assert not DeletionCertificate.objects.for_tenant(tenant).exists()
    assert not ErasureRequest.objects.for_tenant(tenant).exists()


def test_without_a_consent_text_staff_are_told_to_ask_an_admin_and_admins_where_to_publish(
    tenant, staff, admin, make_subject, client_for
) -> None:
    subject = make_subject()
    url = reverse("consent-subject-send-link", args=[subject.pk])
    as_staff = client_for(staff, tenant).get(url).content.decode()
    assert 'id="no-consent-text"' in as_staff and "ask an admin" in as_staff
    assert 'id="send-link"' not in as_staff  # no form that cannot be sent
    as_admin = client_for(admin, tenant).get(url).content.decode()
    assert f'href="{reverse("consent-templates")}"' in as_admin and "Publish a consent text" in as_admin


def test_the_send_link_form_puts_each_purpose_beside_its_label(
    tenant, staff, template, make_subject, client_for
):
    subject = make_subject()
    html = (
        client_for(staff, tenant)
        .get(reverse("consent-subject-send-link", args=[subject.pk]))
        .content.decode()
    )
    boxes = re.findall(
        r'<label class="check" for="([^"]+)"><input type="checkbox" name="purposes"[^>]*id="\1"', html
    )
    assert len(boxes) == 3


def test_the_subject_list_says_what_its_date_means(tenant, staff, template, make_subject, sign, client_for):
    open_ended, dated = make_subject("Open Ended"), make_subject("Dated")
    expiry = timezone.now() + dt.timedelta(days=30)
    sign(dated, expires_at=expiry)
    link = actions.send_consent_link(
        actor=staff,
        subject=open_ended,
        template=template,
        purposes=["train_identity"],
        intended_uses="Portraits on the brand website.",
        identity_verification="Passport seen in person",
        expires_at=None,
        site_url=SITE_URL,
    )
    actions.sign_consent(
        token=issued(link).token, purposes=["train_identity"], full_name="Open Ended", representation="none"
    )
    html = client_for(staff, tenant).get(reverse("consent-subjects")).content.decode()
    assert "Open-ended: in force until withdrawn" in html
    assert f"Consent in force until {expiry:%Y-%m-%d}" in html
    assert "<th>Until</th>" not in html


def test_an_empty_subject_list_says_what_to_do_next_and_who_can(tenant, staff, legal, client_for) -> None:
    for user, words in ((staff, "Add the first person below"), (legal, "once brand staff add them")):
        html = client_for(user, tenant).get(reverse("consent-subjects")).content.decode()
        assert 'class="empty"' in html and words in html
