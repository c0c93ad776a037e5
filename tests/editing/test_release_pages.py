"""Release pages: the form on an approved output (the consent's channels and territories to tick), the
release's page with its state and download, the list."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from consent import actions as consent_actions
from consent.models import ConsentRecord
from editing.models import Release, ReleaseDownload
from tenancy.models import Role
from tests.editing.isolation_factories import output_for
from tests.editing.releases import approved_output

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("release_signing")]


def _form(**changes: Any) -> dict[str, Any]:
    ends_at = (timezone.localdate() + datetime.timedelta(days=30)).isoformat()
    return {
        "campaign": "Spring 2027",
        "channels": ["web"],
        "territories": ["US", "EU"],
        "ends_at": ends_at,
        **changes,
    }


def test_staff_release_an_approved_output_from_its_form_and_download_it_from_its_page(
    record: ConsentRecord, staff: Any, client_for: Callable[..., Any]
) -> None:
    client = client_for(staff, record.tenant)
    output = approved_output(record, staff)
    url = f"/outputs/{output.pk}/release/"

    form = client.get(url).content.decode()
    for value in ("web", "social", "US", "EU"):
        assert f'value="{value}"' in form
    assert 'id="release-form"' in form and "style=" not in form

    refused = client.post(url, _form(ends_at="2020-01-01"))
    assert refused.status_code == 200 and "The end date is in the past." in refused.content.decode()
    assert not Release.objects.for_tenant(record.tenant).exists()

    created = client.post(url, _form())
    release = Release.objects.for_tenant(record.tenant).get()
    assert created.status_code == 302 and created["Location"] == f"/releases/{release.pk}/"
    assert release.territories == ["US", "EU"]
    page = client.get(created["Location"]).content.decode()
    assert 'data-status="active"' in page and "Spring 2027" in page and release.sha256 in page
    download = client.get(f"/releases/{release.pk}/download/")
    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="likeness-release-{release.pk}.png"'
    assert ReleaseDownload.objects.for_tenant(record.tenant).count() == 1
    assert "/releases/" in client.get("/releases/").content.decode()

    consent_actions.record_revocation(actor=staff, record=record, reason="Phone call", received_via="phone")
    after = client.get(f"/releases/{release.pk}/").content.decode()
    assert 'data-status="revoked"' in after and 'id="release-download"' not in after
    refused_download = client.get(f"/releases/{release.pk}/download/")
    assert refused_download.status_code == 302 and refused_download["Location"] == f"/releases/{release.pk}/"
    assert ReleaseDownload.objects.for_tenant(record.tenant).count() == 1


def test_the_form_of_an_output_that_cannot_be_released_says_why_and_reviewers_cannot_release(
    record: ConsentRecord, staff: Any, member: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    pending = output_for(record)
    page = client_for(staff, record.tenant).get(f"/outputs/{pending.pk}/release/")
    assert page.status_code == 200 and "pending review" in page.content.decode()
    assert 'id="release-form"' not in page.content.decode()
    reviewer = client_for(member(record.tenant, Role.LEGAL_REVIEWER), record.tenant)
    approved = approved_output(record, staff)
    assert reviewer.get(f"/outputs/{approved.pk}/release/").status_code == 403
    assert reviewer.post(f"/outputs/{approved.pk}/release/", _form()).status_code == 403
    assert reviewer.get("/releases/").status_code == 200
    assert not Release.objects.for_tenant(record.tenant).exists()
