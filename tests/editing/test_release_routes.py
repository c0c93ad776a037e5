"""Nothing but a release's download serves an output's clean image, and nothing serves a released file
when its release may not be used.

Every route that can answer with image bytes is listed here and found from the URL configuration (the
dashboard's and the API router's), as tests/consent/test_csv_exports.py finds CSV routes: a new route
whose name says it serves a file, an image, a photo or a download fails until it has a case. Each is
asked, as a staff member allowed to see everything, for the output's image asset, the released file's
asset, the output and the release, with the output pending, rejected, vetoed, withdrawn, approved
with the consent revoked, and released past its end date; no answer may be the clean output or the
released file (bytes, or decoded pixels at the file's size).
"""

from __future__ import annotations

import datetime
import io
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from django.test import Client
from django.urls import get_resolver, reverse
from django.utils import timezone
from PIL import Image

from consent import actions as consent_actions
from consent import vault
from consent.models import ConsentRecord
from editing import review
from editing.models import Output, Release
from tests.editing.isolation_factories import output_for
from tests.editing.releases import model_like_png, pixels, release_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("release_signing")]

FILE_ROUTE_NAME = re.compile(r"file|download|image|photo")
# Route name -> how it is asked: (client, the object whose id goes into the URL).
FILE_ROUTES = {
    "consent-asset-file": ("staff", "image_asset"),
    "asset-download": ("api", "image_asset"),
    "output-download": ("api", "output"),
    "consent-portal-image": ("portal", "output"),
    "release-download": ("api", "release"),
    "release-download-file": ("staff", "release"),
}
# Matching names that never give a file out: uploads, and a photo's deletion.
UPLOAD_ONLY = {
    "consent-subject-photos": "the photo upload form",
    "consent-photo-delete": "a confirmation page, then deletes the photo",
    "subject-enrollment-photo": "POST only: uploads the enrollment photo",
    "subject-reference-photos": "POST only: uploads reference photos",
}
# Only a release's own downloads may serve the released file, and only while the gate allows it.
RELEASE_DOWNLOADS = {"release-download", "release-download-file"}
STATES = ["pending", "rejected", "vetoed", "withdrawn", "consent_revoked", "past_end_date"]


def test_every_route_that_serves_a_file_is_covered_here() -> None:
    names = {
        name for name in get_resolver().reverse_dict if isinstance(name, str) and FILE_ROUTE_NAME.search(name)
    }
    assert names == set(FILE_ROUTES) | set(UPLOAD_ONLY), "a file route was added or renamed: give it a case"


def _same_picture(body: bytes, secret: bytes) -> bool:
    """Whether `body` is `secret`, or decodes to (nearly) its pixels at its size: a re-encode is a leak."""
    if body == secret:
        return True
    try:
        shown = pixels(body)
    except OSError:
        return False
    reference = pixels(secret)
    if shown.shape != reference.shape:
        with Image.open(io.BytesIO(body)) as image:
            resized = image.convert("RGB").resize(reference.shape[1::-1], Image.Resampling.LANCZOS)
        shown = np.asarray(resized, dtype=np.int16)
    return float(np.abs(shown - reference).mean()) < 8


def _scenario(
    state: str, record: ConsentRecord, staff: Any, admin: Any
) -> tuple[Output, Release | None, bytes]:
    """The output in `state`; the release made of it while it was allowed (none for pending, rejected)."""
    tenant = record.tenant
    output = output_for(record, image_bytes=model_like_png(seed=7))
    if state == "rejected":
        review.reject_outputs(actor=staff, tenant=tenant, output_ids=[output.pk], reason="Blurred.")
    release, released = None, b""
    if state not in ("pending", "rejected"):
        review.approve_outputs(actor=staff, tenant=tenant, output_ids=[output.pk])
        output.refresh_from_db()
        release = release_of(staff, output)
        assert release.file is not None
        released = vault.read_asset(release.file)
    if state == "vetoed":
        review.veto_output(link=record.link, output_id=output.pk)
    elif state == "withdrawn":
        consent_actions.erase_subject(actor=admin, subject=record.subject, reason="Asked by e-mail.")
    elif state == "consent_revoked":
        consent_actions.record_revocation(
            actor=staff, record=record, reason="Phone call", received_via="phone"
        )
    elif state == "past_end_date":
        assert release is not None
        Release.objects.for_tenant(tenant).filter(pk=release.pk).update(
            ends_at=timezone.localdate() - datetime.timedelta(days=1)
        )
    return output, release, released


def _ask(
    route: str, output: Output, release: Release | None, clients: dict[str, Any], token: str
) -> list[tuple[str, Any]]:
    """(url, response) for each id the route takes here: the output's image asset and the released file's
    asset for the file routes, the output, or the release."""
    who, what = FILE_ROUTES[route]
    by_kind: dict[str, list[int | None]] = {
        "image_asset": [output.image_id, release.file_id if release else None],
        "output": [output.pk],
        "release": [release.pk if release else None],
    }
    ids = by_kind[what]
    answers = []
    for pk in ids:
        if pk is None:
            continue
        url = reverse(route, args=[token, pk] if who == "portal" else [pk])
        answers.append((url, clients[who].get(url)))
    return answers


@pytest.fixture
def clients(
    record: ConsentRecord, staff: Any, client_for: Callable[..., Client], api_client_for: Callable[..., Any]
) -> dict[str, Any]:
    """Staff on the dashboard and the API (allowed to see every file), and the subject on their portal."""
    return {
        "staff": client_for(staff, record.tenant),
        "api": api_client_for(staff, record.tenant),
        "portal": Client(),
    }


@pytest.mark.parametrize("state", STATES)
def test_no_route_serves_the_clean_output_or_a_released_file_that_may_not_be_used(
    state: str,
    record: ConsentRecord,
    staff: Any,
    admin: Any,
    clients: dict[str, Any],
    link_tokens: dict[int, str],
) -> None:
    clean = model_like_png(seed=7)
    output, release, released = _scenario(state, record, staff, admin)
    served = 0
    for route in FILE_ROUTES:
        for url, response in _ask(route, output, release, clients, link_tokens[record.pk]):
            if response.status_code != 200:
                continue
            served += 1
            body = b"".join(response.streaming_content) if response.streaming else response.content
            assert not _same_picture(body, clean), (state, url)
            if released:
                assert not _same_picture(body, released), (state, url)
            assert "attachment" not in response.get("Content-Disposition", ""), (state, url)
            assert "no-store" in response["Cache-Control"]
    # The previews still load where staff may see the output (the queue and studio keep working).
    assert served > 0 or state == "withdrawn"


def test_the_release_download_serves_the_released_file_while_allowed_and_previews_are_marked(
    record: ConsentRecord,
    staff: Any,
    admin: Any,
    clients: dict[str, Any],
    link_tokens: dict[int, str],
) -> None:
    """The control of the walk above: the check catches the file when a route does serve it."""
    output, release, released = _scenario("approved", record, staff, admin)
    assert release is not None
    for route in FILE_ROUTES:
        for url, response in _ask(route, output, release, clients, link_tokens[record.pk]):
            released_asset = FILE_ROUTES[route][1] == "image_asset" and f"/{release.file_id}/" in url
            assert response.status_code == (404 if released_asset else 200), url
            if route in RELEASE_DOWNLOADS:
                assert response.content == released
                assert (
                    response["Content-Disposition"]
                    == f'attachment; filename="likeness-release-{release.pk}.png"'
                )
                assert _same_picture(response.content, released)
            elif response.status_code == 200:
                assert response["Content-Type"] == "image/jpeg"
                assert response["Content-Disposition"].startswith("inline;")
                with Image.open(io.BytesIO(response.content)) as preview:
                    assert max(preview.size) <= 512
