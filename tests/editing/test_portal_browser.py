"""The subject's link pages in a real headless Chromium, on a phone and a desktop: sign, veto, withdraw."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from consent.models import ConsentRecord, Subject
from editing import review
from editing.models import Output
from tenancy.models import Role
from tests.consent.mailbox import IssuedLink
from tests.editing.isolation_factories import output_for
from tests.support import DESKTOP, PHONE, horizontal_overflow, log_in, unlabelled_fields

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _fits(page: Any) -> None:
    """No unlabelled field, and no sideways scrolling at either width (the fingerprint wraps)."""
    assert unlabelled_fields(page) == []
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        assert horizontal_overflow(page) == 0, size


def test_an_unsigned_link_fits_a_phone(
    make_subject: Callable[..., Subject], issue_link: Callable[..., IssuedLink], live_server: Any, page: Any
) -> None:
    issued = issue_link(make_subject())
    page.goto(f"{live_server.url}/consent/{issued.token}/")
    assert "asks for your consent" in page.locator("h1").inner_text()
    _fits(page)


def test_the_subject_vetoes_an_approved_image_and_withdraws_with_a_confirmation_and_a_receipt(
    record: ConsentRecord,
    link_tokens: dict[int, str],
    staff: Any,
    member: Callable[..., Any],
    live_server: Any,
    page: Any,
    chromium: Any,
) -> None:
    tenant = record.tenant
    approved, pending = output_for(record), output_for(record)
    review.approve_outputs(actor=staff, tenant=tenant, output_ids=[approved.pk])
    portal = f"{live_server.url}/consent/{link_tokens[record.pk]}/"

    page.set_viewport_size(PHONE)
    page.goto(portal)
    assert page.locator("h1").inner_text() == f"Your consent to {tenant.name}"
    page.click("#signed summary")  # the consent text and its fingerprint
    assert page.locator("#consent-fingerprint").is_visible()
    assert page.locator("[data-testid=portal-image]").count() == 2
    assert page.evaluate("() => [...document.images].every((image) => image.naturalWidth > 0)")
    _fits(page)

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"#portal-image-{approved.pk} input[name=reason]").fill("Not this one, please.")
    page.click(f"#portal-image-{approved.pk} [data-testid=portal-veto]")
    page.wait_for_selector("text=can no longer use it")
    assert page.locator("[data-testid=portal-image]").count() == 1
    assert Output.objects.for_tenant(tenant).get(pk=approved.pk).status == "vetoed"
    # The brand sees it at once, in its own browser.
    member(tenant, Role.STAFF, username="portal-staff")
    brand = chromium.new_context().new_page()
    try:
        log_in(brand, live_server.url, "portal-staff")
        brand.goto(f"{live_server.url}/approvals/?status=vetoed")
        vetoed = brand.locator(f"[data-output-id='{approved.pk}']")
        assert "Vetoed" in vetoed.inner_text() and "Not this one, please." in vetoed.inner_text()
        _fits(brand)
    finally:
        brand.context.close()

    page.click("#withdraw-link")
    page.wait_for_selector("[data-testid=withdraw-confirm]")
    _fits(page)
    assert not hasattr(ConsentRecord.objects.for_tenant(tenant).get(pk=record.pk), "revocation")
    page.click("[data-testid=withdraw-submit]")
    page.wait_for_selector("[data-testid=withdrawal-receipt]")
    assert "You withdrew this consent" in page.locator("#withdrawal-receipt").inner_text()
    assert page.locator("[data-testid=portal-image]").count() == 0
    _fits(page)
    # From the withdrawal on, nothing of it can be approved (erasure then withdraws it, docs/compliance.md).
    refused = review.approve_outputs(actor=staff, tenant=tenant, output_ids=[pending.pk])
    assert refused[0].code == "consent_revoked"
