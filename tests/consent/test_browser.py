"""In a real headless Chromium: staff send a consent link; the subject ticks one purpose, signs, withdraws."""

from __future__ import annotations

import pytest

from consent import actions
from consent.models import ConsentRecord, Subject
from tenancy.models import Role
from tests.conftest import TEST_PASSWORD

from .conftest import CONSENT_TEXT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_link_sent_from_the_dashboard_is_signed_and_revoked_by_the_subject(
    tenant_factory, member, live_server, page, chromium
) -> None:
    tenant = tenant_factory("Northwind Studio")
    admin = member(tenant, Role.ADMIN, username="nw-admin")
    member(tenant, Role.STAFF, username="nw-staff")
    actions.publish_consent_template(actor=admin, tenant=tenant, name="Likeness consent", body=CONSENT_TEXT)

    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", "nw-staff")
    page.fill("input[name=password]", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.click("nav.main a:has-text('Subjects')")
    page.fill("#add-subject input[name=display_name]", "Maya Example")
    page.click("#add-subject button[type=submit]")
    page.wait_for_selector("#subject-status")
    assert page.locator("#subject-status").inner_text() == "No consent"

    page.click("text=Send a consent link")
    page.check("#send-link input[value=train_identity]")
    page.check("#send-link input[value=generate_images]")
    page.fill("#send-link textarea[name=intended_uses]", "Campaign portraits on the brand site, spring 2027.")
    page.fill("#send-link input[name=identity_verification]", "Passport seen in person")
    page.click("#send-link button[type=submit]")
    url = page.locator("#consent-link").input_value()
    assert url.startswith(f"{live_server.url}/consent/")

    # The subject opens the link in their own browser: no account, no staff session.
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

        subject_page.click("#revoke")
        subject_page.wait_for_selector("#revoked")
    finally:
        subject_context.close()

    with pytest.raises(actions.ConsentRequired):
        actions.require(subject, "generate_images")
    page.goto(f"{live_server.url}/subjects/{subject.pk}/")
    assert page.locator("#subject-status").inner_text() == "Consent revoked"
