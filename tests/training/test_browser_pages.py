"""The subject page's reference set in a real headless Chromium: crops, masks and captions at phone and
desktop widths (no unlabelled field, no sideways scroll), and a caption saved with the keyboard alone."""

from __future__ import annotations

import pytest

from tests.support import DESKTOP, PHONE, horizontal_overflow, log_in, unlabelled_fields

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_reference_set_shows_crops_and_masks_and_a_caption_is_saved_by_keyboard(
    photographed, built_set, staff, live_server, page
) -> None:
    reference_set = built_set(photographed)
    item = reference_set.items.order_by("name").first()
    log_in(page, live_server.url, staff.username)
    url = f"{live_server.url}/subjects/{photographed.pk}/"
    for viewport in (PHONE, DESKTOP):
        page.set_viewport_size(viewport)
        page.goto(url)
        assert unlabelled_fields(page) == []
        assert horizontal_overflow(page) <= 0
        crops = page.locator("#reference-set .reference-item img")
        assert crops.count() == 2 * reference_set.items.count()
        assert all(crops.nth(i).evaluate("(img) => img.naturalWidth > 0") for i in range(crops.count()))

    caption = page.locator(f"#caption-form-{item.pk} input[name$=caption]")
    caption.focus()
    page.keyboard.press("End")
    page.keyboard.type(", soft window light")
    page.keyboard.press("Enter")
    page.wait_for_selector("ul.messages li.success")
    item.refresh_from_db()
    assert item.caption.endswith(", soft window light")


def test_a_reference_set_being_built_shows_its_captions_once_ready_without_a_reload_by_hand(
    photographed, staff, live_server, page
) -> None:
    from training.actions import build_reference_set, request_reference_set

    reference_set, started = request_reference_set(actor=staff, subject=photographed)
    assert started  # no worker here: it stays "building" until this test builds it
    log_in(page, live_server.url, staff.username)
    page.goto(f"{live_server.url}/subjects/{photographed.pk}/")
    assert page.locator("#reference-set").get_attribute("data-status") == "building"
    build_reference_set(reference_set.pk)
    page.wait_for_selector("#reference-set[data-status=ready] .caption-form", timeout=60_000)
