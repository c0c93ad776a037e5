"""The two-person rule: an erasure that staff start waits for a tenant admin, with a visible deadline.

A revocation stops every use at once, whoever records it; the key is destroyed at
once only when the subject withdraws on their own link or an admin records it.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from consent import actions
from consent.actions import ConsentReason, ConsentRequired
from consent.models import (
    AssetKind,
    DeletionCertificate,
    ErasureRequest,
    ErasureTrigger,
    Purpose,
    SubjectKey,
)
from tenancy.models import Membership, Role

from .scans import files_under

pytestmark = pytest.mark.django_db


def _store(subject) -> None:
    actions.store_subject_file(
        subject=subject, kind=AssetKind.ADAPTER, data=b"weights", content_type="x/y", extension="bin"
    )


def _key_alive(subject) -> bool:
    return SubjectKey.objects.for_tenant(subject.tenant).filter(subject=subject).exists()


def _sweep(at, *extra) -> str:
    out = io.StringIO()
    call_command("enforce_retention", "--now", at.isoformat(), *extra, stdout=out)
    return out.getvalue()


def _revoke(actor, subject):
    return actions.record_revocation(
        actor=actor, record=subject.records.get(), reason="Letter of 2 May", received_via="letter"
    )


def _pending(subject, trigger=ErasureRequest.Trigger.REVOCATION) -> ErasureRequest:
    return ErasureRequest.objects.for_tenant(subject.tenant).get(
        subject=subject, trigger=trigger, state=ErasureRequest.State.PENDING
    )


def _audited(tenant) -> list[str]:
    return list(AuditEntry.objects.for_tenant(tenant).order_by("seq").values_list("action", flat=True))


def test_staff_revocation_stops_every_use_at_once_and_an_admin_confirms_the_erasure(
    tenant, enrolled_subject, staff, admin, storage_root, settings
) -> None:
    subject = enrolled_subject
    before = timezone.now()

    revocation = _revoke(staff, subject)

    with pytest.raises(ConsentRequired) as refused:
        actions.require(subject, Purpose.TRAIN_IDENTITY)
    assert refused.value.reason == ConsentReason.REVOKED
    assert _key_alive(subject) and files_under(storage_root)  # nothing destroyed yet
    assert not DeletionCertificate.objects.for_tenant(tenant).exists()
    request = _pending(subject)
    assert request.revocation == revocation and request.requested_by == staff
    hours = timedelta(hours=settings.LIKENESS_ERASURE_CONFIRM_HOURS)
    assert before + hours <= request.deadline <= timezone.now() + hours
    assert _audited(tenant)[-2:] == ["consent.revoked", "erasure.requested"]

    confirmed = actions.confirm_erasure_request(actor=admin, request=request)

    assert confirmed.state == ErasureRequest.State.CONFIRMED and confirmed.decided_by == admin
    certificate = DeletionCertificate.objects.for_tenant(tenant).get(subject=subject)
    assert confirmed.certificate == certificate and certificate.trigger == ErasureTrigger.REVOCATION
    assert certificate.key_destroyed_at is not None and not _key_alive(subject)
    assert "erasure.request_confirmed" in _audited(tenant)
    actions.complete_erasure(certificate.pk)
    assert files_under(storage_root) == []


def test_the_deadline_follows_the_setting(enrolled_subject, staff, settings) -> None:
    settings.LIKENESS_ERASURE_CONFIRM_HOURS = 5
    _revoke(staff, enrolled_subject)
    request = _pending(enrolled_subject)
    assert request.deadline - request.requested_at == timedelta(hours=5)


def test_only_an_admin_other_than_the_requester_confirms(
    tenant, enrolled_subject, staff, legal, admin, member
) -> None:
    _revoke(staff, enrolled_subject)
    request = _pending(enrolled_subject)
    for outsider in (staff, legal):
        with pytest.raises(PermissionDenied):
            actions.confirm_erasure_request(actor=outsider, request=request)
    # The requester promoted to admin still needs a second person.
    Membership.objects.filter(user=staff, tenant=tenant).update(role=Role.ADMIN)
    with pytest.raises(actions.ConsentActionError, match="someone other than"):
        actions.confirm_erasure_request(actor=staff, request=request)
    assert _key_alive(enrolled_subject)
    actions.confirm_erasure_request(actor=admin, request=request)
    assert not _key_alive(enrolled_subject)
    with pytest.raises(actions.ConsentActionError, match="no longer pending"):
        actions.confirm_erasure_request(actor=member(tenant, Role.ADMIN), request=request)


def test_an_admin_recording_a_revocation_erases_at_once(tenant, enrolled_subject, admin) -> None:
    _revoke(admin, enrolled_subject)
    assert not _key_alive(enrolled_subject)
    assert not ErasureRequest.objects.for_tenant(tenant).exists()


def test_the_subjects_own_revocation_erases_at_once_even_while_a_request_is_pending(
    tenant, enrolled_subject, staff, link_tokens
) -> None:
    record = enrolled_subject.records.get()
    _revoke(staff, enrolled_subject)
    request = _pending(enrolled_subject)

    actions.revoke_via_link(token=link_tokens[record.pk])

    assert not _key_alive(enrolled_subject)
    request.refresh_from_db()
    certificate = DeletionCertificate.objects.for_tenant(tenant).get()
    assert request.state == ErasureRequest.State.OVERTAKEN and request.certificate == certificate


def test_a_revocation_request_cannot_be_declined(enrolled_subject, staff, admin) -> None:
    _revoke(staff, enrolled_subject)
    with pytest.raises(actions.ConsentActionError, match="new consent"):
        actions.decline_erasure_request(
            actor=admin, request=_pending(enrolled_subject), reason="Looks forged"
        )


def test_the_sweep_waits_for_the_deadline_then_erases_an_unconfirmed_revocation(
    tenant, enrolled_subject, staff
) -> None:
    subject = enrolled_subject
    cache = actions.store_subject_file(
        subject=subject,
        kind=AssetKind.LATENT_CACHE,
        data=b"c",
        content_type="x/y",
        extension="bin",
        retain_for_days=1,
    )
    _revoke(staff, subject)
    request = _pending(subject)

    dry = _sweep(timezone.now(), "--dry-run")
    assert f"erasure request #{request.pk}" in dry and "awaits a tenant admin" in dry
    # The subject waits; a file whose own shorter retention ended meanwhile goes all the same.
    assert "0 subjects erased, 1 files destroyed" in _sweep(request.deadline - timedelta(minutes=1))
    assert _key_alive(subject) and not subject.assets.filter(pk=cache.pk).exists()

    out = _sweep(request.deadline + timedelta(minutes=1))

    assert f"erased subject {subject.pk} " in out and not _key_alive(subject)
    request.refresh_from_db()
    certificate = DeletionCertificate.objects.for_tenant(tenant).get(scope=DeletionCertificate.Scope.SUBJECT)
    assert request.state == ErasureRequest.State.DEADLINE_PASSED and request.decided_by is None
    assert request.certificate == certificate and certificate.trigger == ErasureTrigger.REVOCATION
    assert certificate.completed_at is not None
    assert "erasure.request_deadline_passed" in _audited(tenant)


def test_a_new_consent_supersedes_a_pending_revocation_request(tenant, enrolled_subject, staff, sign) -> None:
    subject = enrolled_subject
    _revoke(staff, subject)
    request = _pending(subject)

    sign(subject)

    request.refresh_from_db()
    assert request.state == ErasureRequest.State.SUPERSEDED
    assert "0 subjects erased" in _sweep(request.deadline + timedelta(days=1))
    assert _key_alive(subject)
    assert "erasure.request_superseded" in _audited(tenant)


def test_a_consent_that_comes_into_force_later_supersedes_the_request_then(
    enrolled_subject, staff, sign
) -> None:
    subject = enrolled_subject
    _revoke(staff, subject)
    request = _pending(subject)
    starts = timezone.now() + timedelta(hours=2)
    sign(subject, valid_from=starts)
    assert _pending(subject) == request  # not in force yet: the request still stands

    _sweep(starts + timedelta(minutes=1))

    request.refresh_from_db()
    assert request.state == ErasureRequest.State.SUPERSEDED
    assert "0 subjects erased" in _sweep(request.deadline + timedelta(days=1))
    assert _key_alive(subject)


def test_revoking_a_consent_that_came_into_force_since_opens_a_new_request(
    enrolled_subject, staff, sign
) -> None:
    subject = enrolled_subject
    _revoke(staff, subject)
    first = _pending(subject)
    starts = timezone.now() + timedelta(hours=2)
    later = sign(subject, valid_from=starts)

    actions.record_revocation(
        actor=staff, record=later, reason="Phone call", received_via="phone", at=starts + timedelta(hours=1)
    )

    first.refresh_from_db()
    assert first.state == ErasureRequest.State.SUPERSEDED
    second = _pending(subject)
    assert second.revocation is not None and second.revocation.record == later
    assert second.deadline > first.deadline and _key_alive(subject)


def test_a_consent_that_expires_while_the_request_waits_is_erased_on_expiry(
    tenant, make_subject, sign, staff
) -> None:
    subject = make_subject()
    sign(subject, expires_at=timezone.now() + timedelta(hours=1))
    _store(subject)
    _revoke(staff, subject)
    request = _pending(subject)

    _sweep(timezone.now() + timedelta(hours=2))

    assert not _key_alive(subject)
    assert DeletionCertificate.objects.for_tenant(tenant).get().trigger == ErasureTrigger.EXPIRY
    request.refresh_from_db()
    assert request.state == ErasureRequest.State.OVERTAKEN


def test_a_staff_revocation_of_a_consent_no_longer_in_force_needs_no_confirmation(
    tenant, make_subject, sign, staff
) -> None:
    """Nothing was in force before it, so the erasure was already due: staff start nothing."""
    subject = make_subject()
    sign(subject, expires_at=timezone.now() + timedelta(hours=1))
    _store(subject)
    actions.record_revocation(
        actor=staff,
        record=subject.records.get(),
        reason="Letter",
        received_via="post",
        at=timezone.now() + timedelta(hours=2),
    )
    assert not ErasureRequest.objects.for_tenant(tenant).exists()
    assert not _key_alive(subject)


def test_staff_purpose_satisfied_waits_for_an_admin_who_confirms_or_declines(
    tenant, make_subject, sign, staff, admin
) -> None:
    subject = make_subject()
    sign(subject, expires_at=timezone.now() + timedelta(days=3650))
    _store(subject)

    request = actions.mark_purpose_satisfied(actor=staff, subject=subject)

    assert request is not None and request.trigger == ErasureRequest.Trigger.PURPOSE_SATISFIED
    subject.refresh_from_db()
    assert subject.purpose_satisfied_at is None
    with pytest.raises(actions.ConsentActionError, match="awaits a tenant admin"):
        actions.mark_purpose_satisfied(actor=staff, subject=subject)
    # BIPA's 0 days would erase at the next sweep; unconfirmed, nothing runs, even past the deadline.
    late = request.deadline + timedelta(days=1)
    dry = _sweep(late, "--dry-run")
    assert f"erasure request #{request.pk}" in dry and "overdue" in dry
    assert "0 subjects erased" in _sweep(late) and _key_alive(subject)
    request.refresh_from_db()
    assert request.state == ErasureRequest.State.PENDING

    with pytest.raises(actions.ConsentActionError, match="reason"):
        actions.decline_erasure_request(actor=admin, request=request, reason="  ")
    declined = actions.decline_erasure_request(actor=admin, request=request, reason="Campaign extended")
    assert declined.state == ErasureRequest.State.DECLINED
    assert declined.decision_reason == "Campaign extended"
    assert "erasure.request_declined" in _audited(tenant)

    again = actions.mark_purpose_satisfied(actor=staff, subject=subject)
    assert again is not None
    actions.confirm_erasure_request(actor=admin, request=again)
    subject.refresh_from_db()
    assert subject.purpose_satisfied_at is not None
    assert f"erased subject {subject.pk} " in _sweep(timezone.now() + timedelta(minutes=1))
    assert DeletionCertificate.objects.for_tenant(tenant).get().trigger == ErasureTrigger.RETENTION


def test_an_admin_marking_the_purpose_takes_effect_at_once_and_closes_a_staff_request(
    make_subject, sign, staff, admin
) -> None:
    subject = make_subject()
    sign(subject)
    request = actions.mark_purpose_satisfied(actor=staff, subject=subject)
    assert request is not None

    assert actions.mark_purpose_satisfied(actor=admin, subject=subject) is None

    subject.refresh_from_db()
    request.refresh_from_db()
    assert subject.purpose_satisfied_at is not None
    assert request.state == ErasureRequest.State.CONFIRMED and request.decided_by == admin


def test_pages_tell_staff_the_deadline_and_let_an_admin_confirm(
    tenant, enrolled_subject, staff, admin, legal, client_for
) -> None:
    subject = enrolled_subject
    as_staff, as_admin = client_for(staff, tenant), client_for(admin, tenant)
    recorded = as_staff.post(
        reverse("consent-record-revoke", args=[subject.records.get().pk]),
        {"received_via": "letter", "reason": "Letter dated 2 May"},
        follow=True,
    )
    request = _pending(subject)
    deadline = timezone.localtime(request.deadline).strftime("%Y-%m-%d %H:%M")
    html = recorded.content.decode()
    assert "awaits a tenant admin" in html and deadline in html
    page = as_staff.get(reverse("consent-subject", args=[subject.pk])).content.decode()
    assert 'id="erasure-requests"' in page and deadline in page
    assert reverse("consent-erasure-request-confirm", args=[request.pk]) not in page  # staff cannot act

    listed = as_admin.get(reverse("consent-erasure-requests")).content.decode()
    assert f'data-request="{request.pk}"' in listed and deadline in listed
    confirm_url = reverse("consent-erasure-request-confirm", args=[request.pk])
    assert confirm_url in as_admin.get(reverse("consent-subject", args=[subject.pk])).content.decode()
    assert as_staff.get(confirm_url).status_code == 403
    assert client_for(legal, tenant).post(confirm_url).status_code == 403
    shown = as_admin.get(confirm_url)
    assert shown.status_code == 200 and 'id="confirm-form"' in shown.content.decode()
    assert _key_alive(subject)  # a GET changes nothing

    done = as_admin.post(confirm_url)

    assert done.status_code == 302 and done["Location"] == reverse("consent-subject", args=[subject.pk])
    assert not _key_alive(subject)
    again = as_admin.post(confirm_url)
    assert again.status_code == 400 and "no longer pending" in again.content.decode()


def test_the_decline_page_needs_a_reason_and_refuses_revocations(
    tenant, make_subject, sign, staff, admin, client_for
) -> None:
    subject = make_subject()
    sign(subject)
    as_staff, as_admin = client_for(staff, tenant), client_for(admin, tenant)
    marked = as_staff.post(reverse("consent-subject-purpose", args=[subject.pk]), follow=True)
    assert "awaits a tenant admin" in marked.content.decode()
    request = _pending(subject, ErasureRequest.Trigger.PURPOSE_SATISFIED)
    url = reverse("consent-erasure-request-decline", args=[request.pk])

    assert as_admin.post(url, {"reason": ""}).status_code == 400
    assert as_admin.post(url, {"reason": "x" * 2001}).status_code == 400
    assert as_admin.post(url, {"reason": "Campaign extended to 2028"}).status_code == 302
    request.refresh_from_db()
    assert request.state == ErasureRequest.State.DECLINED

    _store(subject)
    _revoke(staff, subject)
    revocation_url = reverse("consent-erasure-request-decline", args=[_pending(subject).pk])
    page = as_admin.get(revocation_url)
    assert page.status_code == 200 and "cannot be declined" in page.content.decode()
    assert as_admin.post(revocation_url, {"reason": "Looks forged"}).status_code == 400


def test_the_api_shows_the_deadline_and_lets_an_admin_confirm_or_decline(
    tenant, enrolled_subject, staff, admin, api_client_for
) -> None:
    subject = enrolled_subject
    as_staff, as_admin = api_client_for(staff, tenant), api_client_for(admin, tenant)
    revoked = as_staff.post(
        f"/api/v1/subjects/{subject.pk}/revoke/",
        {"record": subject.records.get().pk, "received_via": "email", "reason": "Email of 5 June"},
        format="json",
    )
    assert revoked.status_code == 201
    pending = revoked.json()["revocation"]["erasure_request"]
    request = _pending(subject)
    assert pending["id"] == request.pk and pending["state"] == "pending"
    assert pending["deadline"] == request.deadline.isoformat().replace("+00:00", "Z")
    assert as_staff.get(f"/api/v1/subjects/{subject.pk}/").json()["status"] == "erasure_pending"

    listed = as_admin.get("/api/v1/erasure-requests/?state=pending").json()["results"]
    assert [(row["id"], row["trigger"], row["overdue"]) for row in listed] == [
        (request.pk, "revocation", False)
    ]
    assert as_staff.post(f"/api/v1/erasure-requests/{request.pk}/confirm/").status_code == 403
    confirmed = as_admin.post(f"/api/v1/erasure-requests/{request.pk}/confirm/")
    assert confirmed.status_code == 200, confirmed.json()
    assert confirmed.json()["state"] == "confirmed" and confirmed.json()["certificate"] is not None
    assert not _key_alive(subject)
    assert as_admin.post(f"/api/v1/erasure-requests/{request.pk}/confirm/").status_code == 400


def test_api_purpose_satisfied_by_staff_is_accepted_for_confirmation(
    tenant, make_subject, sign, staff, admin, api_client_for
) -> None:
    subject = make_subject()
    sign(subject)
    as_staff, as_admin = api_client_for(staff, tenant), api_client_for(admin, tenant)
    marked = as_staff.post(f"/api/v1/subjects/{subject.pk}/purpose-satisfied/")
    assert marked.status_code == 202 and marked.json()["trigger"] == "purpose_satisfied"
    url = f"/api/v1/erasure-requests/{marked.json()['id']}/decline/"
    assert as_admin.post(url, {"reason": ""}, format="json").status_code == 400
    declined = as_admin.post(url, {"reason": "Not finished"}, format="json")
    assert declined.status_code == 200 and declined.json()["state"] == "declined"
    assert declined.json()["decision_reason"] == "Not finished"
    direct = as_admin.post(f"/api/v1/subjects/{subject.pk}/purpose-satisfied/")
    assert direct.status_code == 200 and direct.json()["purpose_satisfied_at"] is not None
