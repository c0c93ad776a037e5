"""Only the subject can sign (issue 9, item 1; and the mail part of item 12).

The signing link travels only by e-mail to the subject's own address; staff see
whether it was delivered, never the link; a logged-in session of the product is
refused at every signing step (and the refusal audited); in person, the signer
first enters a one-time code e-mailed to the subject. A mail failure of any
kind leaves the link pending and re-sendable, and never answers 500.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail, signing
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from consent import actions
from consent.models import (
    CaptureChannel,
    ConsentLink,
    ConsentRecord,
    ConsentRevocation,
    InPersonHandover,
    Purpose,
    Subject,
)
from consent.tokens import make_link_token, token_fingerprint
from tenancy.models import Role, Tenant
from tests.fixtures.consent import SITE_URL

from .mailbox import URL, delivered_code, delivered_token, delivered_url

pytestmark = pytest.mark.django_db

LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
SMTP = "django.core.mail.backends.smtp.EmailBackend"
SIGNATURE = {
    "action": "sign",
    "purposes": [Purpose.TRAIN_IDENTITY.value],
    "full_name": "Ada Example",
    "representation": "none",
}


def _send_link_form(template) -> dict[str, object]:
    return {
        "template": template.pk,
        "purposes": [Purpose.TRAIN_IDENTITY.value, Purpose.GENERATE_IMAGES.value],
        "intended_uses": "Portraits for the autumn catalogue, web and print, in 2027.",
        "identity_verification": "Driving licence seen on a video call",
    }


def _failing_smtp(settings) -> None:
    """A real SMTP connection to a port nothing listens on: the mail server is down."""
    settings.EMAIL_BACKEND = SMTP
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 2


def _refusals(tenant: Tenant) -> list[AuditEntry]:
    return list(AuditEntry.objects.for_tenant(tenant).filter(action="consent.sign_refused").order_by("seq"))


def _anonymous() -> Client:
    return Client(HTTP_USER_AGENT="SubjectPhone/2.0", REMOTE_ADDR="192.0.2.80")


# --- the e-mail is the only carrier --------------------------------------------------------------------
def test_staff_never_see_the_signing_url_on_pages_or_in_the_api(
    tenant, staff, legal, template, make_subject, client_for, api_client_for
) -> None:
    subject = make_subject("Ada Example", contact_email="ada@example.test")
    staff_client = client_for(staff, tenant)
    sent = staff_client.post(
        reverse("consent-subject-send-link", args=[subject.pk]), _send_link_form(template), follow=True
    )
    assert sent.status_code == 200 and "/consent/" not in sent.content.decode()
    link = ConsentLink.objects.for_tenant(tenant).get()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ada@example.test"]
    token = delivered_token(link)
    assert "E-mailed to ada@example.test" in sent.content.decode()

    api = api_client_for(staff, tenant)
    answered = api.post(
        f"/api/v1/subjects/{subject.pk}/send-link/",
        {**_send_link_form(template), "purposes": ["edit_photos"]},
        format="json",
    )
    assert answered.status_code == 201, answered.json()
    assert answered.json()["delivery"] == "delivered" and answered.json()["signed"] is False
    second = ConsentLink.objects.for_tenant(tenant).get(pk=answered.json()["id"])
    tokens = [token, delivered_token(second)]

    seen = [sent.content, answered.content]
    for user in (staff, legal):
        browser = client_for(user, tenant)
        for url in (
            reverse("consent-subject", args=[subject.pk]),
            reverse("consent-link", args=[link.pk]),
            reverse("consent-subject-history", args=[subject.pk]),
        ):
            page = browser.get(url)
            assert page.status_code == 200, url
            seen.append(page.content)
        client = api_client_for(user, tenant)
        for url in (
            "/api/v1/consent-links/",
            f"/api/v1/consent-links/{link.pk}/",
            f"/api/v1/subjects/{subject.pk}/",
        ):
            seen.append(client.get(url).content)
    seen.append(
        client_for(legal, tenant).get(reverse("consent-subject-history-json", args=[subject.pk])).content
    )
    for body in seen:
        text = body.decode()
        assert "/consent/" not in text and not any(found in text for found in tokens)


def test_the_token_from_the_email_signs_and_the_record_says_how_the_signer_was_verified(
    tenant, staff, template, make_subject, client_for, api_client_for, legal
) -> None:
    subject = make_subject("Ada Example", contact_email="ada@example.test")
    client_for(staff, tenant).post(
        reverse("consent-subject-send-link", args=[subject.pk]), _send_link_form(template)
    )
    link = ConsentLink.objects.for_tenant(tenant).get()
    delivery = link.deliveries.get()
    url = delivered_url(link)
    assert url.startswith("http://testserver/consent/")

    assert _anonymous().post(url, SIGNATURE).status_code == 302
    record = ConsentRecord.objects.for_tenant(tenant).get()
    assert record.capture_channel == CaptureChannel.SIGNED_LINK
    assert (record.delivered_to, record.delivered_at) == ("ada@example.test", delivery.attempted_at)
    assert (record.code_verified_at, record.handover) == (None, None)
    assert (record.signer_ip, record.signer_user_agent) == ("192.0.2.80", "SubjectPhone/2.0")

    history = (
        client_for(legal, tenant).get(reverse("consent-subject-history", args=[subject.pk])).content.decode()
    )
    assert "delivered to ada@example.test" in history
    exported = client_for(legal, tenant).get(reverse("consent-subject-history-csv", args=[subject.pk]))
    header, row = exported.content.decode().splitlines()[:2]
    assert "delivered_to" in header.split(",") and "ada@example.test" in row
    api_record = api_client_for(legal, tenant).get(f"/api/v1/consent-records/{record.pk}/").json()
    assert api_record["capture_channel"] == "signed_link" and api_record["delivered_to"] == "ada@example.test"
    assert api_record["delivered_at"] is not None and api_record["code_verified_at"] is None


def test_a_link_that_was_never_delivered_cannot_be_signed(
    tenant, template, make_subject, staff, settings
) -> None:
    _failing_smtp(settings)
    subject = make_subject()
    link = actions.send_consent_link(
        actor=staff,
        subject=subject,
        template=template,
        purposes=["edit_photos"],
        intended_uses="Retouching existing catalogue photos, web only.",
        identity_verification="Known face",
        site_url=SITE_URL,
    )
    with pytest.raises(actions.ConsentActionError, match="never delivered"):
        actions.sign_consent(
            token=make_link_token(link.public_id, link.created_at),
            purposes=["edit_photos"],
            full_name="X Y",
            representation="none",
        )
    assert not ConsentRecord.objects.for_tenant(tenant).exists()


def test_links_made_before_email_only_delivery_can_neither_be_signed_nor_re_sent(
    tenant, staff, template, make_subject
) -> None:
    """Such links were shown to staff: after the upgrade they sign nothing (revoking still works)."""
    subject = make_subject()
    now = timezone.now()
    link = ConsentLink(
        tenant=tenant,
        subject=subject,
        template=template,
        purposes_offered=["edit_photos"],
        intended_uses="Retouching existing catalogue photos, web only.",
        identity_verification="Known face",
        valid_from=now,
        sign_by=now + timedelta(days=7),
        sent_to=subject.contact_email,
        created_at=now - timedelta(seconds=5),
    )
    old_token = signing.dumps(link.public_id.hex, salt="likeness.consent.link")  # how links were made
    link.token_sha256 = token_fingerprint(old_token)
    link.save()
    assert actions.resolve_link(old_token) == link
    with pytest.raises(actions.ConsentActionError, match="never delivered"):
        actions.sign_consent(
            token=old_token, purposes=["edit_photos"], full_name="A Bc", representation="none"
        )
    with pytest.raises(actions.ConsentActionError, match="cannot be re-sent"):
        actions.resend_consent_link(actor=staff, link=link, site_url=SITE_URL)
    assert mail.outbox == []


# --- a logged-in session never signs -------------------------------------------------------------------
@pytest.mark.parametrize("role", [Role.STAFF, Role.ADMIN, Role.LEGAL_REVIEWER])
def test_a_logged_in_member_can_neither_sign_nor_revoke_and_is_audited(
    role, tenant, member, make_subject, issue_link, client_for
) -> None:
    user = member(tenant, role)
    subject = make_subject()
    issued = issue_link(subject)
    url = reverse("consent-sign", args=[issued.token])
    logged_in = client_for(user, tenant)

    opened = logged_in.get(url)
    forged = logged_in.post(url, {**SIGNATURE, "full_name": subject.display_name})
    for response in (opened, forged):
        assert response.status_code == 403
        assert "sign out or use a private window" in response.content.decode()
        assert 'name="purposes"' not in response.content.decode()
    assert not ConsentRecord.objects.for_tenant(tenant).exists()
    refusals = _refusals(tenant)
    assert [(r.actor_id, r.payload["step"], r.target_id) for r in refusals] == [
        (user.pk, "view", str(issued.link.pk)),
        (user.pk, "sign", str(issued.link.pk)),
    ]

    assert _anonymous().post(url, SIGNATURE).status_code == 302
    withdrawn = logged_in.post(url, {"action": "revoke"})
    assert withdrawn.status_code == 403 and not ConsentRevocation.objects.for_tenant(tenant).exists()
    assert _refusals(tenant)[-1].payload["step"] == "revoke"


def test_a_user_of_another_tenant_is_refused_too_and_audited_in_the_links_tenant(
    tenant, tenant_factory, member, make_subject, issue_link, client_for
) -> None:
    other = tenant_factory()
    outsider = member(other, Role.ADMIN)
    issued = issue_link(make_subject())
    response = client_for(outsider, other).post(reverse("consent-sign", args=[issued.token]), SIGNATURE)
    assert response.status_code == 403 and not ConsentRecord.objects.for_tenant(tenant).exists()
    assert [r.actor_id for r in _refusals(tenant)] == [outsider.pk]
    assert not AuditEntry.objects.for_tenant(other).filter(action="consent.sign_refused").exists()


def test_the_actions_refuse_a_logged_in_signer_themselves(make_subject, issue_link, staff, tenant) -> None:
    issued = issue_link(make_subject())
    with pytest.raises(actions.SignedInUserError):
        actions.sign_consent(
            token=issued.token,
            purposes=["edit_photos"],
            full_name="Staff",
            representation="none",
            session_user=staff,
        )
    assert not ConsentRecord.objects.for_tenant(tenant).exists() and len(_refusals(tenant)) == 1


# --- delivery failures lose nothing ------------------------------------------------------------------
def test_a_failed_email_keeps_the_link_pending_and_a_resend_delivers_it(
    tenant, staff, template, make_subject, client_for, settings, caplog
) -> None:
    _failing_smtp(settings)
    subject = make_subject()
    client = client_for(staff, tenant)
    response = client.post(
        reverse("consent-subject-send-link", args=[subject.pk]), _send_link_form(template), follow=True
    )
    html = response.content.decode()
    assert response.status_code == 200 and "/consent/" not in html
    assert "could not be sent (ConnectionRefusedError)" in html
    link = ConsentLink.objects.for_tenant(tenant).get()
    failed = link.deliveries.get()
    assert (failed.ok, failed.error, failed.sent_to) == (
        False,
        "ConnectionRefusedError",
        subject.contact_email,
    )
    assert "E-mail failed" in client.get(reverse("consent-subject", args=[subject.pk])).content.decode()
    assert AuditEntry.objects.for_tenant(tenant).filter(action="consent.delivery_failed").count() == 1
    assert not any("/consent/" in record.getMessage() for record in caplog.records)

    settings.EMAIL_BACKEND = LOCMEM
    resent = client.post(reverse("consent-link-resend", args=[link.pk]), follow=True)
    assert resent.status_code == 200 and "/consent/" not in resent.content.decode()
    assert [d.ok for d in link.deliveries.order_by("attempted_at", "id")] == [False, True]
    entry = AuditEntry.objects.for_tenant(tenant).get(action="consent.delivered")
    assert entry.actor_id == staff.pk and entry.payload["resend"] is True
    assert _anonymous().post(delivered_url(link), SIGNATURE).status_code == 302
    assert (
        ConsentRecord.objects.for_tenant(tenant).get().delivered_at
        == link.deliveries.get(ok=True).attempted_at
    )


def test_a_tenant_name_with_a_newline_gives_a_clean_subject_line_not_a_500(
    tenant, staff, template, make_subject, client_for
) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(name="Acme\nBcc: thief@example.test")
    subject = make_subject()
    response = client_for(staff, tenant).post(
        reverse("consent-subject-send-link", args=[subject.pk]), _send_link_form(template)
    )
    assert response.status_code == 302
    message = mail.outbox[-1]
    assert message.subject == "Acme Bcc: thief@example.test asks for your consent"
    assert message.recipients() == [subject.contact_email]
    assert ConsentLink.objects.for_tenant(tenant).get().deliveries.get().ok


def test_resends_are_limited_per_link(
    tenant, staff, make_subject, issue_link, client_for, api_client_for, settings
) -> None:
    subject = make_subject()
    link = issue_link(subject).link
    page = client_for(staff, tenant).post(reverse("consent-link-resend", args=[link.pk]))
    assert page.status_code == 429 and "try again in" in page.content.decode()
    api = api_client_for(staff, tenant)
    too_soon = api.post(f"/api/v1/subjects/{subject.pk}/resend-link/", {"link": link.pk}, format="json")
    assert too_soon.status_code == 429 and int(too_soon["Retry-After"]) <= 60
    later = timezone.now()
    for _ in range(actions.MAX_LINK_DELIVERIES - 1):
        later += actions.MIN_DELIVERY_INTERVAL
        assert actions.resend_consent_link(actor=staff, link=link, site_url=SITE_URL, at=later).ok
    with pytest.raises(actions.DeliveryLimitError, match="5 times already") as refused:
        actions.resend_consent_link(actor=staff, link=link, site_url=SITE_URL, at=later + timedelta(hours=1))
    assert refused.value.retry_after is None
    assert link.deliveries.count() == actions.MAX_LINK_DELIVERIES
    # Every e-mail carried the very same link: re-sending needs no stored token.
    assert len({url for message in mail.outbox for url in URL.findall(str(message.body))}) == 1

    actions.sign_consent(
        token=delivered_token(link), purposes=["edit_photos"], full_name="A B", representation="none"
    )
    with pytest.raises(actions.ConsentActionError, match="has been signed"):
        actions.resend_consent_link(actor=staff, link=link, site_url=SITE_URL, at=later + timedelta(hours=2))


# --- only the subject's own address ---------------------------------------------------------------------
def test_links_go_only_to_the_subjects_own_address(
    tenant, staff, admin, template, make_subject, client_for, api_client_for
) -> None:
    no_address = make_subject("Nobody Mailable", contact_email="")
    client = client_for(staff, tenant)
    refused = client.post(
        reverse("consent-subject-send-link", args=[no_address.pk]), _send_link_form(template)
    )
    assert refused.status_code == 400 and "e-mail address first" in refused.content.decode()
    assert not ConsentLink.objects.for_tenant(tenant).exists() and mail.outbox == []

    for address in (staff.email, staff.email.upper(), staff.email.replace("@", "+subject@")):
        with pytest.raises(actions.ConsentActionError, match="reaches a user of"):
            make_subject("Routed To Staff", contact_email=address)
    api = api_client_for(staff, tenant)
    taken = api.post(
        f"/api/v1/subjects/{no_address.pk}/contact/", {"contact_email": admin.email}, format="json"
    )
    assert taken.status_code == 400 and "reaches a user of" in taken.json()["detail"]
    assert Subject.objects.for_tenant(tenant).filter(contact_email=admin.email).count() == 0

    changed = client.post(
        reverse("consent-subject-contact", args=[no_address.pk]), {"contact_email": "n@example.test"}
    )
    assert changed.status_code == 302
    entry = AuditEntry.objects.for_tenant(tenant).get(action="subject.contact_changed")
    assert entry.actor_id == staff.pk and entry.payload == {
        "subject_id": no_address.pk,
        "had_address": False,
        "has_address": True,
    }
    assert (
        client.post(
            reverse("consent-subject-send-link", args=[no_address.pk]), _send_link_form(template)
        ).status_code
        == 302
    )
    assert mail.outbox[-1].to == ["n@example.test"]


def test_a_member_who_takes_the_address_later_gets_no_resend(
    tenant, staff, make_subject, issue_link, member
) -> None:
    subject = make_subject(contact_email="shared@example.test")
    link = issue_link(subject).link
    member(tenant, Role.STAFF, email="Shared@Example.test")
    with pytest.raises(actions.ConsentActionError, match="reaches a user of"):
        actions.resend_consent_link(
            actor=staff, link=link, site_url=SITE_URL, at=timezone.now() + actions.MIN_DELIVERY_INTERVAL
        )
    with pytest.raises(actions.ConsentActionError, match="reaches a user of"):
        actions.start_in_person_signing(
            actor=staff, link=link, at=timezone.now() + actions.MIN_DELIVERY_INTERVAL
        )


# --- in person ---------------------------------------------------------------------------------------
def _start_in_person(client: Client, link: ConsentLink) -> str:
    response = client.post(reverse("consent-link-in-person", args=[link.pk]))
    html = response.content.decode()
    assert response.status_code == 200 and 'id="code-sent"' in html, html
    found = re.search(r'id="handover-url" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


@pytest.fixture
def pending_link(make_subject, issue_link) -> ConsentLink:
    return issue_link(make_subject("Ada Example", contact_email="ada@example.test")).link


def test_in_person_the_right_code_lets_the_subject_sign_once_in_that_browser(
    tenant, staff, make_subject, issue_link, client_for, legal
) -> None:
    subject = make_subject("Ada Example", contact_email="ada@example.test")
    link = issue_link(subject, ["train_identity", "edit_photos"]).link
    link_email = mail.outbox[-1]
    staff_client = client_for(staff, tenant)
    url = _start_in_person(staff_client, link)
    handover = InPersonHandover.objects.for_tenant(tenant).get()
    code_delivery = handover.deliveries.get()
    code_email = mail.outbox[-1]
    assert code_email is not link_email and code_email.to == ["ada@example.test"]
    code = delivered_code(handover)
    assert code not in handover.code_hmac and len(code) == 8
    assert "/consent/" not in code_email.body  # the code e-mail carries no link
    assert code not in staff_client.get(reverse("consent-link", args=[link.pk])).content.decode()

    device = _anonymous()
    first = device.get(url).content.decode()
    assert 'id="code-form"' in first and 'name="purposes"' not in first
    assert device.post(url, {"action": "code", "code": " ".join([code[:4], code[4:]])}).status_code == 302
    form = device.get(url).content.decode()
    assert 'name="purposes"' in form and link.intended_uses in form

    # Another browser with the same URL has no proof: it can neither sign nor enter the code again.
    intruder = Client()
    assert 'name="purposes"' not in intruder.get(url).content.decode()
    stolen = intruder.post(url, SIGNATURE)
    assert stolen.status_code == 400 and "Enter the code from the e-mail first" in stolen.content.decode()
    again = intruder.post(url, {"action": "code", "code": code})
    assert again.status_code == 400 and "entered already" in again.content.decode()
    # A staff session is refused outright.
    assert staff_client.get(url).status_code == 403 and _refusals(tenant)[-1].payload["step"] == "view"

    assert device.post(url, SIGNATURE).status_code == 302
    record = ConsentRecord.objects.for_tenant(tenant).get()
    handover.refresh_from_db()
    assert record.capture_channel == CaptureChannel.IN_PERSON_CODE and record.handover == handover
    assert record.code_verified_at == handover.verified_at and record.delivered_to == "ada@example.test"
    assert record.delivered_at is not None and record.code_verified_at is not None
    assert record.delivered_at == code_delivery.attempted_at < record.code_verified_at <= record.signed_at
    assert 'id="signed"' in device.get(url).content.decode()
    twice = device.post(url, SIGNATURE)
    assert twice.status_code == 400 and ConsentRecord.objects.for_tenant(tenant).count() == 1

    history = (
        client_for(legal, tenant).get(reverse("consent-subject-history", args=[subject.pk])).content.decode()
    )
    assert "code entered" in history
    kinds = list(AuditEntry.objects.for_tenant(tenant).order_by("seq").values_list("action", flat=True))
    assert (
        kinds.index("consent.in_person_started")
        < kinds.index("consent.in_person_verified")
        < kinds.index("consent.signed")
    )


def test_in_person_wrong_codes_count_and_too_many_void_the_handover(
    tenant, staff, pending_link, client_for
) -> None:
    link = pending_link
    url = _start_in_person(client_for(staff, tenant), link)
    code = delivered_code(InPersonHandover.objects.for_tenant(tenant).get())
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    device = _anonymous()
    for left in range(actions.MAX_CODE_ATTEMPTS - 1, 0, -1):
        refused = device.post(url, {"action": "code", "code": wrong})
        assert refused.status_code == 400 and f"{left} tr" in refused.content.decode()
    last = device.post(url, {"action": "code", "code": "not a code"})
    assert last.status_code == 400 and "last try" in last.content.decode()
    handover = InPersonHandover.objects.for_tenant(tenant).get()
    assert handover.voided_at is not None and handover.failed_attempts == actions.MAX_CODE_ATTEMPTS
    late = device.post(url, {"action": "code", "code": code})
    assert late.status_code == 400 and "closed" in late.content.decode() and handover.verified_at is None
    assert 'id="handover-void"' in device.get(url).content.decode()
    assert AuditEntry.objects.for_tenant(tenant).filter(action="consent.in_person_code_refused").count() == 4
    assert AuditEntry.objects.for_tenant(tenant).get(action="consent.in_person_voided").payload["reason"] == (
        "too_many_attempts"
    )
    assert not ConsentRecord.objects.for_tenant(tenant).exists()

    # A new handover works again; its token is no link token.
    fresh = actions.start_in_person_signing(
        actor=staff, link=link, at=timezone.now() + actions.MIN_DELIVERY_INTERVAL
    )
    assert _anonymous().get(reverse("consent-sign", args=[fresh.token])).status_code == 404
    proof = actions.verify_in_person_code(token=fresh.token, code=delivered_code(fresh.handover))
    assert proof and InPersonHandover.objects.for_tenant(tenant).get(pk=fresh.handover.pk).verified_at


def test_an_expired_code_and_a_late_signature_are_refused(tenant, staff, pending_link) -> None:
    started = actions.start_in_person_signing(
        actor=staff, link=pending_link, at=timezone.now() + actions.MIN_DELIVERY_INTERVAL
    )
    code = delivered_code(started.handover)
    with pytest.raises(actions.ConsentActionError, match="expired"):
        actions.verify_in_person_code(
            token=started.token, code=code, at=started.handover.code_expires_at + timedelta(seconds=1)
        )
    proof = actions.verify_in_person_code(token=started.token, code=code, at=started.handover.code_expires_at)
    verified_at = InPersonHandover.objects.for_tenant(tenant).get().verified_at
    assert verified_at is not None
    with pytest.raises(actions.ConsentActionError, match="Too much time"):
        actions.sign_in_person(
            token=started.token,
            proof=proof,
            purposes=["edit_photos"],
            full_name="Ada Example",
            representation="none",
            at=verified_at + actions.SIGN_WITHIN + timedelta(seconds=1),
        )
    assert not ConsentRecord.objects.for_tenant(tenant).exists()


def test_the_api_starts_an_in_person_signing_and_answers_neither_the_code_nor_the_link(
    tenant, staff, pending_link, api_client_for
) -> None:
    link = pending_link
    api = api_client_for(staff, tenant)
    started = api.post(f"/api/v1/subjects/{link.subject_id}/in-person/", {"link": link.pk}, format="json")
    assert started.status_code == 201, started.json()
    body = started.json()
    handover = InPersonHandover.objects.for_tenant(tenant).get()
    assert body["handover"] == handover.pk and body["code_delivery"]["ok"] is True
    assert body["url"].startswith("http://testserver/consent/in-person/")
    text = started.content.decode()
    assert delivered_code(handover) not in text and delivered_token(link) not in text
    again = api.post(f"/api/v1/subjects/{link.subject_id}/in-person/", {"link": link.pk}, format="json")
    assert again.status_code == 429 and "try again" in again.json()["detail"]
    # The URL staff got opens a page that asks for the code, and signs nothing without it.
    device = _anonymous()
    assert 'id="code-form"' in device.get(body["url"]).content.decode()
    assert device.post(body["url"], SIGNATURE).status_code == 400
    assert not ConsentRecord.objects.for_tenant(tenant).exists()
