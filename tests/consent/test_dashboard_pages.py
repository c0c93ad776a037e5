"""The staff dashboard's consent pages: what they tell people, through Django's test client and Chromium."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from consent import actions
from consent.models import DeletionCertificate, ErasureRequest
from tenancy import actions as tenancy_actions
from tenancy.models import Membership, Role
from tests.consent.mailbox import issued
from tests.fixtures.consent import SITE_URL, NamedBytes
from tests.support import DESKTOP, PHONE, horizontal_overflow, log_in, page_link, unlabelled_fields

from . import photos

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


# --- in Chromium: every page of the slice at phone and desktop widths --------------------------------

_NAV_LABELS_ON_ONE_LINE = """
() => [...document.querySelectorAll("nav.main a")]
  .filter((a) => a.getBoundingClientRect().height > parseFloat(getComputedStyle(a).lineHeight) * 1.5)
  .map((a) => a.textContent)
"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_dashboards_consent_and_audit_pages_fit_a_phone_and_a_desktop_with_every_field_labelled(
    tenant, admin, staff, enrolled_subject, make_subject, sign, live_server, page
) -> None:
    erased = make_subject("Erased Example-With-A-Very-Long-Unbroken-Name-That-Must-Wrap-Somewhere-Too")
    erased_record = sign(erased)
    actions.set_enrollment_photo(
        actor=staff, subject=erased, upload=NamedBytes(photos.photo_bytes("obama.jpg"), "erased.jpg")
    )
    actions.record_revocation(actor=admin, record=erased_record, reason="Letter", received_via="letter")
    certificate = DeletionCertificate.objects.for_tenant(tenant).get()
    record = enrolled_subject.records.get()
    link = record.link
    waiting = make_subject("Waiting Example")
    sign(waiting)
    actions.set_enrollment_photo(
        actor=staff, subject=waiting, upload=NamedBytes(photos.photo_bytes("obama.jpg"), "waiting.jpg")
    )
    actions.record_revocation(
        actor=staff, record=waiting.records.get(), reason="Phone call", received_via="phone"
    )
    pending = ErasureRequest.objects.for_tenant(tenant).get()
    invitation = tenancy_actions.invite_member(
        actor=admin, tenant=tenant, email="new.member@example.test", role=Role.STAFF
    ).invitation
    entry = AuditEntry.objects.for_tenant(tenant).order_by("-seq").first()
    assert entry is not None
    paths = [
        "/",
        reverse("consent-subjects"),
        reverse("consent-subject-send-link", args=[enrolled_subject.pk]),
        reverse("consent-subject-photos", args=[enrolled_subject.pk]),
        reverse("consent-subject-history", args=[enrolled_subject.pk]),
        reverse("consent-subject-contact", args=[enrolled_subject.pk]),
        reverse("consent-link", args=[link.pk]),
        reverse("consent-record-revoke", args=[record.pk]),
        reverse("consent-templates"),
        reverse("consent-template", args=[record.template_id]),
        reverse("consent-schedules"),
        reverse("consent-schedule", args=[enrolled_subject.retention_schedule_id]),
        reverse("consent-certificates"),
        reverse("consent-certificate", args=[certificate.pk]),
        reverse("consent-erasure-requests"),
        reverse("consent-erasure-request-confirm", args=[pending.pk]),
        reverse("audit-log"),
        reverse("audit-entry", args=[entry.pk]),
        reverse("audit-verify"),
        reverse("members"),
        reverse("member-detail", args=[Membership.objects.get(tenant=tenant, user=staff).pk]),
        reverse("invitation-detail", args=[invitation.pk]),
        reverse("tenant-settings"),
        reverse("account"),
        reverse("account-password"),
        reverse("api-docs"),
        "/subjects/999999/",  # the 404 page
    ]
    log_in(page, live_server.url, admin.username)
    problems: dict[str, object] = {}
    for viewport in (PHONE, DESKTOP):
        page.set_viewport_size(viewport)
        for path in paths:
            response = page.goto(f"{live_server.url}{path}")
            assert response is not None and response.status == (404 if "999999" in path else 200), path
            where = f"{path} at {viewport['width']}px"
            if path == reverse("api-docs"):
                page.click("#api-open-all")  # measure every collapsible section open
            if overflow := horizontal_overflow(page):
                problems[f"{where}: wider by"] = overflow
            if unlabelled := unlabelled_fields(page):
                problems[f"{where}: unlabelled"] = unlabelled
            if viewport == DESKTOP and (wrapped := page.evaluate(_NAV_LABELS_ON_ONE_LINE)):
                problems[f"{where}: navigation labels on two lines"] = wrapped
    page.click("header form button:has-text('Log out')")
    for viewport in (PHONE, DESKTOP):
        page.set_viewport_size(viewport)
        page.goto(f"{live_server.url}/login/")
        if overflow := horizontal_overflow(page):
            problems[f"/login/ at {viewport['width']}px: wider by"] = overflow
        if unlabelled := unlabelled_fields(page):
            problems[f"/login/ at {viewport['width']}px: unlabelled"] = unlabelled
    assert problems == {}


@pytest.mark.parametrize("subjects", [5, 50])
def test_the_subject_list_costs_the_same_queries_for_5_or_50_subjects(
    subjects, tenant, staff, make_subject, client_for, django_assert_max_num_queries
) -> None:
    for number in range(subjects):
        make_subject(f"Subject {number:02}")
    client = client_for(staff, tenant)
    with django_assert_max_num_queries(20):
        page = client.get(reverse("consent-subjects")).content.decode()
    assert page.count("data-subject=") == subjects


def test_the_subject_list_is_paginated(tenant, staff, make_subject, client_for) -> None:
    from consent.views import subjects as subject_views

    for number in range(subject_views.SUBJECTS_PER_PAGE + 1):
        make_subject(f"Subject {number:02}")
    client = client_for(staff, tenant)
    first = client.get(reverse("consent-subjects")).content.decode()
    assert first.count("data-subject=") == subject_views.SUBJECTS_PER_PAGE and 'rel="next"' in first
    second = client.get(reverse("consent-subjects") + page_link(first, "next")).content.decode()
    assert second.count("data-subject=") == 1 and f"Subject {subject_views.SUBJECTS_PER_PAGE:02}" in second
