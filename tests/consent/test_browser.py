"""In a real headless Chromium: the subject signs from the e-mailed link, or in person with the e-mailed code.

Staff's browser never holds a signing link; the subject's browser is a fresh,
logged-out context, as on the subject's own device.
"""

from __future__ import annotations

import pytest

from consent import actions
from consent.models import ConsentLink, ConsentRecord, InPersonHandover, Subject
from tenancy.models import Role
from tests.fixtures.consent import CONSENT_TEXT
from tests.support import log_in

from .mailbox import delivered_code, delivered_url

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _staff_login(page, live_server, username: str) -> None:
    log_in(page, live_server.url, username)


def test_link_sent_from_the_dashboard_is_signed_and_revoked_by_the_subject(
    tenant_factory, member, live_server, page, chromium
) -> None:
    tenant = tenant_factory("Northwind Studio")
    admin = member(tenant, Role.ADMIN, username="nw-admin")
    member(tenant, Role.STAFF, username="nw-staff")
    actions.publish_consent_template(actor=admin, tenant=tenant, name="Likeness consent", body=CONSENT_TEXT)

    _staff_login(page, live_server, "nw-staff")
    page.click("nav.main a:has-text('Subjects')")
    page.fill("#add-subject input[name=display_name]", "Maya Example")
    page.fill("#add-subject input[name=contact_email]", "maya@example.test")
    page.click("#add-subject button[type=submit]")
    page.wait_for_selector("#subject-status")
    assert page.locator("#subject-status").inner_text() == "No consent"

    page.click("text=Send a consent link")
    page.check("#send-link input[value=train_identity]")
    page.check("#send-link input[value=generate_images]")
    page.fill("#send-link textarea[name=intended_uses]", "Campaign portraits on the brand site, spring 2027.")
    page.fill("#send-link input[name=identity_verification]", "Passport seen in person")
    page.click("#send-link button[type=submit]")
    page.wait_for_selector("#link-status")
    # Staff are told the link went to the subject's address; the page does not contain it.
    assert "/consent/" not in page.content()
    link = ConsentLink.objects.for_tenant(tenant).get()
    url = delivered_url(link)
    assert url.startswith(f"{live_server.url}/consent/")
    # Opened in the staff member's own (logged-in) browser, the link refuses to be signed.
    page.goto(url)
    assert "sign out or use a private window" in page.locator("#sign-refused").inner_text()

    # The subject opens the e-mailed link in their own browser: no account, no staff session.
    subject_context = chromium.new_context()
    subject_page = subject_context.new_page()
    subject_page.set_default_timeout(15_000)
    try:
        subject_page.goto(url)
        assert CONSENT_TEXT in subject_page.locator("#consent-text").inner_text()
        assert "destroyed" in subject_page.locator("#retention-schedule").inner_text()
        boxes = subject_page.locator("input[name=purposes]")
        assert boxes.count() == 2
        assert all(not boxes.nth(i).is_checked() for i in range(2))
        subject_page.check("input[name=purposes][value=generate_images]")
        subject_page.check("input[name=representation][value=none]")
        subject_page.fill("input[name=full_name]", "Maya Example")
        subject_page.click("#sign")
        subject_page.wait_for_selector("#signed")
        assert "Generate new images of me" in subject_page.locator("#signed").inner_text()

        subject = Subject.objects.for_tenant(tenant).get()
        record = ConsentRecord.objects.for_tenant(tenant).get()
        assert record.purposes == ["generate_images"] and record.signer_user_agent
        actions.require(subject, "generate_images")

        # Withdrawing asks first, then gives a receipt.
        subject_page.click("#withdraw-link")
        subject_page.wait_for_selector("#withdraw-confirm")
        actions.require(subject, "generate_images")
        subject_page.click("#revoke")
        subject_page.wait_for_selector("#revoked")
        assert "You withdrew this consent" in subject_page.locator("#withdrawal-receipt").inner_text()
    finally:
        subject_context.close()

    with pytest.raises(actions.ConsentRequired):
        actions.require(subject, "generate_images")
    page.goto(f"{live_server.url}/subjects/{subject.pk}/")
    assert page.locator("#subject-status").inner_text() == "Consent revoked"


def test_in_person_the_subject_enters_the_emailed_code_on_the_handed_over_device_and_signs(
    tenant_factory, member, live_server, page, chromium
) -> None:
    tenant = tenant_factory("Northwind Studio")
    admin = member(tenant, Role.ADMIN, username="nw-admin2")
    staff = member(tenant, Role.STAFF, username="nw-staff2")
    template = actions.publish_consent_template(
        actor=admin, tenant=tenant, name="Likeness consent", body=CONSENT_TEXT
    )
    subject = actions.create_subject(
        actor=staff, tenant=tenant, display_name="Lee Example", contact_email="lee@example.test"
    )
    link = actions.send_consent_link(
        actor=staff,
        subject=subject,
        template=template,
        purposes=["edit_photos"],
        intended_uses="Retouching existing catalogue photos, web shop only.",
        identity_verification="Passport seen in the studio",
        site_url=live_server.url,
    )

    _staff_login(page, live_server, "nw-staff2")
    page.goto(f"{live_server.url}/consent-links/{link.pk}/")
    page.click("#in-person")
    page.click("#confirm-form button[type=submit]")
    page.wait_for_selector("#code-sent")
    handover_url = page.locator("#handover-url").input_value()

    device = chromium.new_context()  # the studio tablet, signed out of Likeness
    tablet = device.new_page()
    tablet.set_default_timeout(15_000)
    try:
        tablet.goto(handover_url)
        assert tablet.locator("input[name=purposes]").count() == 0  # nothing to sign before the code
        tablet.fill(
            "#code-form input[name=code]", delivered_code(InPersonHandover.objects.for_tenant(tenant).get())
        )
        tablet.click("#verify")
        tablet.wait_for_selector("#sign-form")
        assert CONSENT_TEXT in tablet.locator("#consent-text").inner_text()
        tablet.check("input[name=purposes][value=edit_photos]")
        tablet.check("input[name=representation][value=none]")
        tablet.fill("input[name=full_name]", "Lee Example")
        tablet.click("#sign")
        tablet.wait_for_selector("#signed")
    finally:
        device.close()

    record = ConsentRecord.objects.for_tenant(tenant).get()
    assert record.capture_channel == "in_person_code" and record.code_verified_at is not None
    assert record.signer_user_agent and record.delivered_to == "lee@example.test"
    # The staff member's own browser, with the same URL, gets a refusal, not the form.
    page.goto(handover_url)
    assert page.locator("#sign-refused").count() == 1
