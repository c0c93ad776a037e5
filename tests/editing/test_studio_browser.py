"""The studio's pages in a real headless Chromium: every page at phone and desktop widths (no unlabelled
field, no sideways scroll), the mask painted on the canvas reaching the edit action as a PNG it accepts,
and the before/after slider, by keyboard too. Screenshots of each page land in the test's tmp_path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from consent import vault
from editing import actions
from editing.models import EditJob
from tests.support import DESKTOP, PHONE, horizontal_overflow, log_in, overflowing_elements, unlabelled_fields
from training.models import JobStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def edited(model, staff, run_in_process):
    """A finished edit of the subject's enrollment photo (the tiny model, a few steps) with its output."""
    job = run_in_process(
        actions.queue_edit(
            actor=staff,
            identity_model=model,
            source_photo=model.subject.enrollment_photo,
            preset="smile",
            steps=3,
        )
    )
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    return job


def test_every_studio_page_fits_a_phone_and_a_desktop_and_labels_every_field(
    made, edited, staff, live_server, page, tmp_path: Path
) -> None:
    subject = made.subject
    # A long account name (the suite's counter reaches user2648): it names who asked for each job.
    staff.username = "casting-team-member-with-a-long-name"
    staff.save(update_fields=["username"])
    log_in(page, live_server.url, staff.username)
    pages = {
        "subject": f"/subjects/{subject.pk}/",
        "jobs": "/jobs/",
        "job": f"/jobs/{made.job_id}/",
        "models": "/models/",
        "generate": "/studio/",
        "generated": f"/studio/?job={made.job_id}",
        "edit": f"/studio/edit/?subject={subject.pk}",
        "edited": f"/studio/edit/?job={edited.pk}",
    }
    for viewport_name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(viewport)
        for name, path in pages.items():
            page.goto(f"{live_server.url}{path}")
            page.screenshot(path=str(tmp_path / f"{name}-{viewport_name}.png"), full_page=True)
            assert unlabelled_fields(page) == [], (name, viewport_name)
            assert horizontal_overflow(page) <= 0, (name, viewport_name, overflowing_elements(page))
    # The pages show what the journey needs: the hub's sections, results with their scores.
    page.goto(f"{live_server.url}/subjects/{subject.pk}/")
    for section in ("#purposes-in-force", "#subject-photos", "#models", "#subject-jobs", "#subject-outputs"):
        assert page.locator(section).count() == 1, section
    page.goto(f"{live_server.url}/studio/?job={made.job_id}")
    assert page.locator(f"#studio-results [data-output='{made.pk}'] .identity-score").count() == 1


def test_a_painted_mask_reaches_the_edit_action_as_a_png_it_accepts(model, staff, live_server, page) -> None:
    subject = model.subject
    log_in(page, live_server.url, staff.username)
    page.goto(f"{live_server.url}/studio/edit/?subject={subject.pk}")
    page.check(f"input[name=source_photo][value='{subject.enrollment_photo_id}']")
    page.wait_for_selector("#mask-editor:not(.hidden)")
    canvas = page.locator("#mask-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 0
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.4, steps=8)
    page.mouse.up()
    page.select_option("select[name=preset]", "look-left")
    page.click("#edit-submit")
    page.wait_for_url("**/studio/edit/?job=*")

    job = EditJob.objects.for_tenant(subject.tenant).get()
    assert job.preset == "look-left" and job.source_photo_id == subject.enrollment_photo_id
    assert job.user_mask is not None
    mask = Image.open(io.BytesIO(vault.read_asset(job.user_mask)))
    photo = Image.open(io.BytesIO(vault.read_asset(subject.enrollment_photo)))
    assert mask.format == "PNG" and mask.size == photo.size
    white = int((np.asarray(mask.convert("L")) > 127).sum())
    assert 0 < white < mask.size[0] * mask.size[1] / 2  # the stroke, not the whole photo


def test_the_before_and_after_slider_moves_by_keyboard(edited, staff, live_server, page) -> None:
    log_in(page, live_server.url, staff.username)
    page.goto(f"{live_server.url}/studio/edit/?job={edited.pk}")
    after = page.locator(".compare .compare-after").first
    slider = page.locator("input.compare-slider").first
    clip = "(element) => getComputedStyle(element).clipPath"
    assert after.evaluate(clip) == "inset(0px 0px 0px 50%)"
    slider.focus()
    page.keyboard.press("End")
    assert after.evaluate(clip) == "inset(0px 0px 0px 100%)"
    page.keyboard.press("Home")
    assert after.evaluate(clip) == "inset(0px 0px 0px 0%)"
    assert page.evaluate("() => document.activeElement.classList.contains('compare-slider')")


@pytest.mark.worker
def test_generated_images_appear_on_the_results_page_when_the_worker_is_done(
    model, staff, client_for, stack, page
) -> None:
    """The real stack (ASGI server with the job socket, a worker): the results page follows the job and
    shows the images with their identity scores once it has ended, without a reload by hand."""
    from django.conf import settings

    product = stack()
    # The server hashes passwords its own way (the tests' settings use a fast hasher): a session of the
    # staff member's, as the login would have made it, in the shared database.
    session = client_for(staff, model.tenant).cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": product.url}])
    page.goto(f"{product.url}/studio/?subject={model.subject_id}")
    page.select_option("select[name=prompt_preset]", "portrait")
    page.select_option("select[name=preset]", "quick")
    page.fill("input[name=count]", "1")
    page.click("#generate")
    page.wait_for_url("**/studio/?job=*")
    page.wait_for_selector(
        "#studio-results[data-status=succeeded] [data-output] .identity-score", timeout=300_000
    )
    assert page.locator("#regenerate").count() == 1
