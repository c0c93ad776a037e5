"""Releasing an output and verifying the file, in a real headless Chromium, on a phone and a desktop."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from consent import vault
from consent.models import ConsentRecord
from editing.models import Release
from tenancy.models import Role
from tests.editing.releases import approved_output
from tests.support import DESKTOP, PHONE, horizontal_overflow, log_in, unlabelled_fields

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("release_signing"),
]


def _fits(page: Any) -> None:
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        assert unlabelled_fields(page) == [] and horizontal_overflow(page) == 0, (page.url, size)


def test_staff_release_an_output_and_verify_the_downloaded_file(
    record: ConsentRecord,
    member: Callable[..., Any],
    tenant: Any,
    live_server: Any,
    page: Any,
    tmp_path: Path,
) -> None:
    staff = member(tenant, Role.STAFF, username="release-staff")
    output = approved_output(record, staff)
    log_in(page, live_server.url, "release-staff")

    page.goto(f"{live_server.url}/releases/")
    page.click("[data-testid=release-output]")
    assert page.url.endswith(f"/outputs/{output.pk}/release/")
    _fits(page)
    page.fill("input[name=campaign]", "Spring 2027")
    page.check("input[name=channels][value=web]")
    page.check("input[name=territories][value=US]")
    page.fill("input[name=ends_at]", (timezone.localdate() + datetime.timedelta(days=30)).isoformat())
    page.click("#release-submit")
    page.wait_for_selector("#release-state")
    release = Release.objects.for_tenant(tenant).get()
    assert page.text_content("#release-state") == "Valid"
    _fits(page)

    assert release.file is not None
    upload = tmp_path / "found.png"
    upload.write_bytes(vault.read_asset(release.file))
    page.goto(f"{live_server.url}/verify/")
    page.set_input_files("input[name=image]", str(upload))
    page.click("#verify-form button[type=submit]")
    page.wait_for_selector("#verify-result")
    assert page.text_content("#verify-state") == "Valid" and "Maya Example" in page.text_content(
        "#verify-result"
    )
    _fits(page)
    page.goto(f"{live_server.url}/releases/")
    assert page.locator("[data-testid=release-row]").count() == 1
    _fits(page)
