"""The brand's whole journey and the subject's veto, in a real browser against the running product.

What `make run` runs (the ASGI server with its job sockets, a Celery worker on the tiny model)
against the test database: staff add a subject and e-mail a consent link, the subject signs it
from the e-mail in a browser of their own, staff upload photos, build the reference set and
check a caption, train (`quick`) while the progress bar reaches 100%, generate, edit a photo
with a painted mask, approve one output and reject another by keyboard; the subject opens
their portal and vetoes the approved image; the brand sees it withdrawn; the subject's ledger
holds every step. Each step leaves a screenshot in var/test-artefacts/journey/ (the CI
artefacts), at the width the step was taken.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consent.ledger import ledger_zip
from consent.models import Subject
from editing.models import Output, OutputStatus
from tenancy.models import Role
from tests.consent.photos import photo_bytes
from tests.fixtures.consent import CONSENT_TEXT
from tests.support import DESKTOP, PHONE, horizontal_overflow, unlabelled_fields

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ARTEFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artefacts" / "journey"
# The tiny model trains, evaluates, generates and edits in about a minute on two cores; a loaded CI
# machine gets five times that before a step counts as failed.
WORK_TIMEOUT_MS = 300_000


def _photo(name: str) -> dict[str, Any]:
    return {"name": name, "mimeType": "image/jpeg", "buffer": photo_bytes(name)}


def _focused_output(page: Any) -> int:
    """The approval queue's focused output (its item's id is output-<id>)."""
    # After a decision the page comes back and its deferred script puts the focus back in the queue.
    page.wait_for_function("() => document.activeElement.classList.contains('review-item')")
    focused = str(page.evaluate("() => document.activeElement.id"))
    assert focused.startswith("output-"), focused
    return int(focused.removeprefix("output-"))


class Steps:
    """Screenshots named in order, and the checks every page of the journey must pass."""

    def __init__(self) -> None:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        for old in ARTEFACTS.glob("*.png"):
            old.unlink()
        self.count = 0

    def shot(self, page: Any, name: str) -> None:
        self.count += 1
        page.screenshot(path=str(ARTEFACTS / f"{self.count:02d}-{name}.png"), full_page=True)

    def fits(self, page: Any, name: str) -> None:
        """No unlabelled field; no sideways scroll on a phone or a desktop (a screenshot of each)."""
        assert unlabelled_fields(page) == [], name
        for width, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
            page.set_viewport_size(viewport)
            assert horizontal_overflow(page) <= 0, (name, width)
            self.shot(page, f"{name}-{width}")
        page.set_viewport_size(DESKTOP)


def test_the_brand_journey_from_consent_to_a_vetoed_image(
    tenant_factory: Callable[..., Any],
    member: Callable[..., Any],
    client_for: Callable[..., Any],
    stack: Callable[..., Any],
    page: Any,
    chromium: Any,
) -> None:
    from django.conf import settings

    from consent import actions

    steps = Steps()
    tenant = tenant_factory("Northwind Studio")
    admin = member(tenant, Role.ADMIN, username="journey-admin")
    staff = member(tenant, Role.STAFF, username="journey-staff")
    actions.publish_consent_template(actor=admin, tenant=tenant, name="Likeness consent", body=CONSENT_TEXT)
    product = stack()
    page.set_default_timeout(30_000)
    page.set_viewport_size(DESKTOP)
    # The server hashes passwords at full strength (the tests' settings use a fast hasher): the staff
    # member's session as their login would have made it, in the shared database.
    session = client_for(staff, tenant).cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": product.url}])

    # 1. Staff add the subject and e-mail a consent link.
    page.goto(f"{product.url}/subjects/")
    page.fill("#add-subject input[name=display_name]", "Maya Example")
    page.fill("#add-subject input[name=contact_email]", "maya@example.test")
    page.click("#add-subject button[type=submit]")
    page.wait_for_selector("#subject-status")
    subject = Subject.objects.for_tenant(tenant).get()
    steps.fits(page, "subject-added")
    page.goto(f"{product.url}/subjects/{subject.pk}/send-link/")
    for purpose in ("train_identity", "generate_images", "edit_photos"):
        page.check(f"#send-link input[value={purpose}]")
    page.fill("#send-link textarea[name=intended_uses]", "Campaign portraits on the brand site, spring 2027.")
    page.fill("#send-link input[name=identity_verification]", "Passport seen in person")
    steps.fits(page, "send-link")
    page.click("#send-link button[type=submit]")
    page.wait_for_selector("#link-status")

    # 2. The subject signs from the e-mail, in a browser of their own (no account).
    urls = product.mailed_urls("/consent/")
    assert len(urls) == 1, product.log.read_text()[-3000:]
    portal = urls[0]
    subject_context = chromium.new_context()
    subject_page = subject_context.new_page()
    subject_page.set_default_timeout(30_000)
    try:
        subject_page.goto(portal)
        for purpose in ("train_identity", "generate_images", "edit_photos"):
            subject_page.check(f"input[name=purposes][value={purpose}]")
        subject_page.check("input[name=representation][value=none]")
        subject_page.fill("input[name=full_name]", "Maya Example")
        steps.fits(subject_page, "subject-signs")
        subject_page.click("#sign")
        subject_page.wait_for_selector("#signed")

        # 3. Staff upload the enrollment photo and two reference photos.
        page.goto(f"{product.url}/subjects/{subject.pk}/photos/")
        page.set_input_files("#enrollment-form input[name=enrollment]", _photo("obama.jpg"))
        page.click("#enrollment-form button[type=submit]")
        page.wait_for_selector("#references-form")
        page.set_input_files(
            "#references-form input[name=photos]", [_photo("obama2.jpg"), _photo("obama3.jpg")]
        )
        page.click("#references-form button[type=submit]")
        page.wait_for_selector("#photos [data-asset] >> nth=2")
        steps.fits(page, "photos")

        # 4. The reference set is built on the worker; staff check and correct a caption.
        page.goto(f"{product.url}/subjects/{subject.pk}/")
        page.click("#reference-build button[type=submit]")
        page.wait_for_selector("#reference-set[data-status=ready] .caption-form", timeout=WORK_TIMEOUT_MS)
        field = "#reference-set .caption-form >> nth=0 >> [name$=caption]"
        corrected = page.locator(field).input_value() + ", studio light"
        page.fill(field, corrected)
        with page.expect_navigation():
            page.locator("#reference-set .caption-form >> nth=0 >> button[type=submit]").click()
        page.goto(f"{product.url}/subjects/{subject.pk}/")
        assert page.locator(field).input_value() == corrected
        steps.fits(page, "reference-set")

        # 5. A quick training; the job page's bar reaches 100% live.
        page.select_option("#train-form select[name=preset]", "quick")
        page.click("#train-submit")
        page.wait_for_url(re.compile(r".*/jobs/\d+/$"))
        steps.shot(page, "training-started")
        page.wait_for_selector("#job-status:has-text('Succeeded')", timeout=WORK_TIMEOUT_MS)
        assert page.locator("#job-progress").get_attribute("value") == page.locator(
            "#job-progress"
        ).get_attribute("max")
        steps.fits(page, "training-done")

        # 6. Generate two images of the subject.
        page.goto(f"{product.url}/studio/?subject={subject.pk}")
        page.select_option("select[name=prompt_preset]", "portrait")
        page.select_option("#generate-form select[name=preset]", "quick")
        page.fill("input[name=count]", "2")
        steps.fits(page, "studio-generate")
        page.click("#generate")
        page.wait_for_selector(
            "#studio-results[data-status=succeeded] [data-output] .identity-score", timeout=WORK_TIMEOUT_MS
        )
        assert page.locator("#studio-results [data-output]").count() == 2
        steps.fits(page, "generated")

        # 7. Edit the enrollment photo with a painted mask; compare before and after.
        page.goto(f"{product.url}/studio/edit/?subject={subject.pk}")
        subject = Subject.objects.for_tenant(tenant).get(pk=subject.pk)
        page.check(f"input[name=source_photo][value='{subject.enrollment_photo_id}']")
        page.wait_for_selector("#mask-editor:not(.hidden)")
        canvas = page.locator("#mask-canvas")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.7, steps=10)
        page.mouse.up()
        page.select_option("#edit-form select[name=preset]", "smile")
        steps.fits(page, "studio-edit")
        page.click("#edit-submit")
        page.wait_for_selector(
            "#edit-results[data-status=succeeded] .compare-block .background-score", timeout=WORK_TIMEOUT_MS
        )
        slider = page.locator("input[id^=compare-slider-]").first
        slider.focus()
        page.keyboard.press("End")
        steps.fits(page, "edited")

        # 8. Approve one output and reject another, by keyboard alone.
        page.goto(f"{product.url}/approvals/")
        page.wait_for_selector("#review-queue")
        assert page.locator("[data-testid=review-item]").count() == 3
        steps.fits(page, "approvals")
        page.bring_to_front()  # the subject's browser took the focus when it opened
        page.keyboard.press("j")
        approved_id = _focused_output(page)
        page.keyboard.press("a")
        page.wait_for_selector(f"text=Approved #{approved_id}.")
        rejected_id = _focused_output(page)
        page.keyboard.press("r")
        page.keyboard.type("The smile looks forced.")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"text=Rejected #{rejected_id}.")
        steps.shot(page, "decided")
        outputs = Output.objects.for_tenant(tenant)
        assert outputs.get(pk=approved_id).status == OutputStatus.APPROVED
        assert outputs.get(pk=rejected_id).status == OutputStatus.REJECTED

        # 9. The subject opens their portal and vetoes the approved image.
        subject_page.goto(portal)
        subject_page.wait_for_selector("#portal-images")
        assert subject_page.locator(f"#portal-image-{approved_id}").count() == 1
        assert subject_page.locator(f"#portal-image-{rejected_id}").count() == 0  # rejected: never shown
        steps.fits(subject_page, "portal")
        subject_page.once("dialog", lambda dialog: dialog.accept())
        subject_page.locator(f"#portal-image-{approved_id} input[name=reason]").fill("Not this one, please.")
        subject_page.click(f"#portal-image-{approved_id} [data-testid=portal-veto]")
        subject_page.wait_for_selector(f"#portal-image-{approved_id}", state="detached")
        steps.shot(subject_page, "vetoed")
    finally:
        subject_context.close()

    # 10. The brand sees it withdrawn at once.
    page.goto(f"{product.url}/approvals/?status=vetoed")
    vetoed = page.locator(f"#output-{approved_id}")
    assert "Not this one, please." in vetoed.inner_text()
    steps.fits(page, "brand-sees-veto")
    page.goto(f"{product.url}/subjects/{subject.pk}/")
    assert page.locator(f"#subject-outputs [data-output='{approved_id}'][data-status=vetoed]").count() == 1

    # 11. The subject's ledger holds every step, and its chain segment holds together.
    subject = Subject.objects.for_tenant(tenant).get(pk=subject.pk)
    with zipfile.ZipFile(io.BytesIO(ledger_zip(subject))) as archive:
        ledger = json.loads(archive.read("ledger.json"))
    recorded = {event["action"] for event in ledger["events"]}
    expected = {
        "subject.created",
        "consent.link_sent",
        "consent.signed",
        "asset.stored",
        "outputs.approved",
        "outputs.rejected",
        "outputs.vetoed",
    }
    assert expected <= recorded, sorted(recorded)
    assert any(action.startswith("reference_set.") for action in recorded), sorted(recorded)
    assert {"training", "generation", "edit"} <= {
        event["payload"].get("kind") for event in ledger["events"] if event["action"].startswith("job.")
    }, sorted(recorded)
    assert ledger["chain"]["holds"] is True, ledger["chain"]
