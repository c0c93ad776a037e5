"""The subject's portal on their signed link: their consent, their own images, the veto and the withdrawal."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEntry
from consent import actions
from consent.models import ConsentRecord, DeletionCertificate, Subject
from editing import review
from tests.editing.isolation_factories import make_output, output_for, status_now

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(record: ConsentRecord, link_tokens: dict[int, str]) -> str:
    return link_tokens[record.pk]


def _shown(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'id="portal-image-(\d+)"', html)]


def test_the_portal_shows_the_consent_and_only_the_subjects_own_usable_images(
    record: ConsentRecord,
    token: str,
    staff: Any,
    make_subject: Callable[..., Subject],
    sign: Callable[..., ConsentRecord],
    tenant_factory: Callable[..., Any],
) -> None:
    tenant = record.tenant
    pending, approved, rejected = output_for(record), output_for(record), output_for(record)
    review.approve_outputs(actor=staff, tenant=tenant, output_ids=[approved.pk])
    review.reject_outputs(actor=staff, tenant=tenant, output_ids=[rejected.pk], reason="blurred")
    someone_else = output_for(sign(make_subject("Noor Example")))
    foreign = make_output(tenant_factory())
    subject = Client()

    page = subject.get(f"/consent/{token}/")

    html = page.content.decode()
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    assert f"<h1>Your consent to {tenant.name}</h1>" in html and "asks for your consent" not in html
    assert record.template.sha256 in html and "Generate new images of me" in html
    assert _shown(html) == [approved.pk, pending.pk]
    assert "Approved for use" in html and "Waiting for review" in html
    image = subject.get(f"/consent/{token}/images/{pending.pk}/")
    # Their own image, as everyone on the platform sees an output: its review preview (consent.previews).
    assert image.status_code == 200 and image["Content-Type"] == "image/jpeg"
    assert image.content.startswith(b"\xff\xd8") and "no-store" in image["Cache-Control"]
    for other in (someone_else, rejected, foreign):
        assert subject.get(f"/consent/{token}/images/{other.pk}/").status_code == 404
    assert subject.get(f"/consent/{token[:-2]}xx/images/{pending.pk}/").status_code == 404


def test_a_veto_withdraws_an_image_even_after_approval_and_the_brand_sees_it_at_once(
    record: ConsentRecord,
    token: str,
    staff: Any,
    api_client_for: Callable[..., Any],
    client_for: Callable[..., Any],
    make_subject: Callable[..., Subject],
    sign: Callable[..., ConsentRecord],
) -> None:
    tenant = record.tenant
    approved, pending = output_for(record), output_for(record)
    review.approve_outputs(actor=staff, tenant=tenant, output_ids=[approved.pk])
    someone_else = output_for(sign(make_subject("Noor Example")))
    subject = Client()

    vetoed = subject.post(f"/consent/{token}/images/{approved.pk}/veto/", {"reason": "Not my best angle."})
    assert vetoed.status_code == 302 and vetoed["Location"] == f"/consent/{token}/"
    page = subject.get(f"/consent/{token}/").content.decode()
    assert "can no longer use it" in page and _shown(page) == [pending.pk]
    assert subject.get(f"/consent/{token}/images/{approved.pk}/").status_code == 404
    # Another subject's image is not found through this link, and stays as it was.
    assert subject.post(f"/consent/{token}/images/{someone_else.pk}/veto/").status_code == 404
    assert status_now(someone_else) == "pending_review"
    subject.post(f"/consent/{token}/images/{pending.pk}/veto/", {"reason": ""})

    rows = api_client_for(staff).get("/api/v1/outputs/?status=vetoed").json()["results"]
    assert {row["id"]: row["veto_reason"] for row in rows} == {
        approved.pk: "Not my best angle.",
        pending.pk: "",
    }
    brand = client_for(staff, tenant)
    queue = brand.get("/approvals/")
    assert [o.pk for o in queue.context["page_obj"].object_list] == [someone_else.pk]
    vetoes = brand.get("/approvals/?status=vetoed")
    assert [o.pk for o in vetoes.context["page_obj"].object_list] == [pending.pk, approved.pk]
    assert "by the subject, on their consent page: “Not my best angle.”" in vetoes.content.decode()
    entry = AuditEntry.objects.for_tenant(tenant).filter(action="outputs.vetoed").order_by("seq").first()
    assert entry is not None and entry.actor is None
    assert entry.payload["by"] == "subject_via_link" and entry.payload["output_ids"] == [approved.pk]


def test_a_logged_in_session_is_refused_on_every_portal_route_and_audited(
    record: ConsentRecord, token: str, staff: Any, client_for: Callable[..., Any]
) -> None:
    output = output_for(record)
    logged_in = client_for(staff, record.tenant)
    answers = [
        logged_in.get(f"/consent/{token}/images/{output.pk}/"),
        logged_in.post(f"/consent/{token}/images/{output.pk}/veto/"),
        logged_in.get(f"/consent/{token}/withdraw/"),
        logged_in.post(f"/consent/{token}/withdraw/"),
    ]
    assert [answer.status_code for answer in answers] == [403, 403, 403, 403]
    assert all(b"sign out or use a private window" in answer.content for answer in answers)
    steps = AuditEntry.objects.for_tenant(record.tenant).filter(action="consent.sign_refused").order_by("seq")
    assert [entry.payload["step"] for entry in steps] == ["view", "veto", "view", "revoke"]
    assert status_now(output) == "pending_review"
    assert not hasattr(ConsentRecord.objects.for_tenant(record.tenant).get(pk=record.pk), "revocation")


def test_withdrawal_is_confirmed_first_then_a_receipt_and_the_certificate_and_no_images(
    record: ConsentRecord, token: str
) -> None:
    output = output_for(record)
    subject = Client()
    portal = subject.get(f"/consent/{token}/").content.decode()
    assert f'href="/consent/{token}/withdraw/"' in portal and 'name="action" value="revoke"' not in portal

    confirm = subject.get(f"/consent/{token}/withdraw/")
    assert confirm.status_code == 200 and "This cannot be undone" in confirm.content.decode()
    assert not hasattr(ConsentRecord.objects.for_tenant(record.tenant).get(pk=record.pk), "revocation")

    done = subject.post(f"/consent/{token}/withdraw/")
    assert done.status_code == 302 and done["Location"] == f"/consent/{token}/"
    receipt = subject.get(f"/consent/{token}/").content.decode()
    assert 'id="withdrawal-receipt"' in receipt and 'id="erasure-running"' in receipt
    assert _shown(receipt) == [] and 'id="withdraw-link"' not in receipt
    assert subject.get(f"/consent/{token}/images/{output.pk}/").status_code == 404
    assert subject.get(f"/consent/{token}/withdraw/")["Location"] == f"/consent/{token}/"

    certificate = DeletionCertificate.objects.for_tenant(record.tenant).get(subject=record.subject)
    actions.complete_erasure(certificate.pk)
    certificate.refresh_from_db()
    receipt = subject.get(f"/consent/{token}/").content.decode()
    assert 'id="deletion-certificate"' in receipt and str(certificate.public_id) in receipt
    assert "generated or edited output: 1" in _between(receipt, "deletion-certificate")


def _between(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}"')
    return html[start : html.index("</section>", start)]


def test_an_ended_consent_shows_its_withdrawal_and_nothing_else(
    make_subject: Callable[..., Subject],
    sign: Callable[..., ConsentRecord],
    link_tokens: dict[int, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ends = timezone.now() + timedelta(days=1)
    record = sign(make_subject("Ended Example"), expires_at=ends)
    token = link_tokens[record.pk]
    output = output_for(record)
    later = ends + timedelta(days=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    subject = Client()

    page = subject.get(f"/consent/{token}/").content.decode()

    assert 'id="consent-ended"' in page and 'id="withdraw-link"' in page
    assert 'id="portal-images"' not in page and _shown(page) == []
    assert subject.get(f"/consent/{token}/images/{output.pk}/").status_code == 404
    assert subject.post(f"/consent/{token}/images/{output.pk}/veto/").status_code == 404


@pytest.mark.parametrize("rows", [5, 50])
def test_the_portal_costs_the_same_queries_for_5_or_50_images(
    rows: int, record: ConsentRecord, token: str, django_assert_max_num_queries: Any
) -> None:
    for _ in range(rows):
        output_for(record)
    subject = Client()
    with django_assert_max_num_queries(5):
        page = subject.get(f"/consent/{token}/")
    assert len(_shown(page.content.decode())) == min(rows, 24)


def test_a_withdrawal_staff_recorded_can_be_hurried_by_the_subject_from_the_receipt(
    record: ConsentRecord, token: str, staff: Any
) -> None:
    output_for(record)  # something of the subject is stored: the erasure waits for an admin
    actions.record_revocation(actor=staff, record=record, reason="Asked by phone", received_via="phone")
    subject = Client()
    receipt = subject.get(f"/consent/{token}/").content.decode()
    assert 'id="erasure-waiting"' in receipt and 'id="erase-now"' in receipt and _shown(receipt) == []
    assert not DeletionCertificate.objects.for_tenant(record.tenant).exists()

    assert subject.post(f"/consent/{token}/withdraw/")["Location"] == f"/consent/{token}/"

    assert DeletionCertificate.objects.for_tenant(record.tenant).filter(subject=record.subject).exists()
    receipt = subject.get(f"/consent/{token}/").content.decode()
    assert 'id="erasure-running"' in receipt and 'id="erase-now"' not in receipt
