"""The approval queue in a real headless Chromium, by keyboard alone, on a phone and a desktop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from consent.models import ConsentRecord
from editing.models import Output
from tenancy.models import Role
from tests.editing.isolation_factories import output_for
from tests.support import DESKTOP, PHONE, horizontal_overflow, log_in, unlabelled_fields

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _focused_id(page: Any) -> str:
    return str(page.evaluate("() => document.activeElement.id"))


def _focus_is_visible(page: Any) -> bool:
    return bool(page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle !== 'none'"))


def test_the_queue_is_decided_with_the_keyboard_alone(
    record: ConsentRecord, member: Callable[..., Any], tenant: Any, live_server: Any, page: Any
) -> None:
    oldest, middle, newest, extra = (output_for(record) for _ in range(4))
    member(tenant, Role.STAFF, username="queue-staff")

    page.set_viewport_size(DESKTOP)
    log_in(page, live_server.url, "queue-staff")
    page.click("nav.main a:has-text('Approvals')")
    page.wait_for_selector("#review-queue")
    assert unlabelled_fields(page) == []
    assert horizontal_overflow(page) == 0
    page.set_viewport_size(PHONE)
    assert horizontal_overflow(page) == 0
    page.set_viewport_size(DESKTOP)

    # j / k move a visible focus: newest first.
    page.keyboard.press("j")
    assert _focused_id(page) == f"output-{extra.pk}" and _focus_is_visible(page)
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert _focused_id(page) == f"output-{newest.pk}" and _focus_is_visible(page)

    # a approves the focused output; the queue comes back focused on the one that took its place.
    page.keyboard.press("a")
    page.wait_for_selector(f"text=Approved #{newest.pk}.")
    assert page.locator("[data-testid=review-item]").count() == 3
    assert _focused_id(page) == f"output-{middle.pk}" and _focus_is_visible(page)

    # r asks for the reason; Enter there rejects.
    page.keyboard.press("r")
    assert page.evaluate("() => document.activeElement.name") == "reason"
    page.keyboard.type("The smile looks forced.")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"text=Rejected #{middle.pk}.")
    assert _focused_id(page) == f"output-{oldest.pk}"

    # x selects for the bulk bar; Shift+Tab reaches its button, Enter decides the selection.
    page.keyboard.press("x")
    page.keyboard.press("k")
    page.keyboard.press("x")
    assert page.locator("#bulk-count").inner_text() == "Selected: 2"
    page.keyboard.press("Shift+Tab")
    assert _focused_id(page) == "bulk-submit"
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Nothing waits for review.")

    statuses = {o.pk: o.status for o in Output.objects.for_tenant(tenant).all()}
    assert statuses == {
        newest.pk: "approved",
        middle.pk: "rejected",
        oldest.pk: "approved",
        extra.pk: "approved",
    }
    rejected = Output.objects.for_tenant(tenant).get(pk=middle.pk)
    assert rejected.decision_reason == "The smile looks forced."
