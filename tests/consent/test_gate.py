"""consent.actions.require: each purpose x granted / not granted / expired / revoked / not yet valid."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from consent import actions
from consent.actions import ConsentReason, ConsentRequired
from consent.models import Purpose

pytestmark = pytest.mark.django_db

PHRASES = {
    Purpose.TRAIN_IDENTITY: "training an identity model",
    Purpose.GENERATE_IMAGES: "generating new images",
    Purpose.EDIT_PHOTOS: "editing existing photos",
}


@pytest.mark.parametrize("purpose", list(Purpose))
def test_granted_purpose_returns_the_covering_record(purpose, make_subject, sign) -> None:
    subject = make_subject()
    record = sign(subject, [purpose.value])
    assert actions.require(subject, purpose) == record
    assert actions.require(subject, purpose.value) == record


@pytest.mark.parametrize("purpose", list(Purpose))
def test_not_granted_purpose_is_refused_as_missing(purpose, make_subject, sign) -> None:
    subject = make_subject()
    others = [p.value for p in Purpose if p != purpose]
    sign(subject, others)
    with pytest.raises(ConsentRequired) as refused:
        actions.require(subject, purpose)
    assert refused.value.reason == ConsentReason.MISSING
    assert refused.value.purpose == purpose
    assert f"has not consented to {PHRASES[purpose]}" in refused.value.message
    for other in others:
        actions.require(subject, other)


@pytest.mark.parametrize("purpose", list(Purpose))
def test_no_consent_at_all_is_missing(purpose, make_subject) -> None:
    subject = make_subject()
    with pytest.raises(ConsentRequired) as refused:
        actions.require(subject, purpose)
    assert refused.value.reason == ConsentReason.MISSING
    assert "has not signed any consent" in refused.value.message


@pytest.mark.parametrize("purpose", list(Purpose))
def test_expired_consent_is_refused_with_its_end_date(purpose, make_subject, sign) -> None:
    subject = make_subject()
    ends = timezone.now() + timedelta(days=30)
    sign(subject, [purpose.value], expires_at=ends)
    assert actions.require(subject, purpose, at=ends - timedelta(seconds=1))
    with pytest.raises(ConsentRequired) as refused:
        actions.require(subject, purpose, at=ends + timedelta(days=1))
    assert refused.value.reason == ConsentReason.EXPIRED
    assert f"consent to {PHRASES[purpose]} expired on" in refused.value.message
    assert timezone.localtime(ends).strftime("%d %B %Y") in refused.value.message


@pytest.mark.parametrize("purpose", list(Purpose))
def test_revoked_consent_is_refused_from_the_revocation_on(purpose, make_subject, sign, staff) -> None:
    subject = make_subject()
    record = sign(subject, [purpose.value])
    before = timezone.now()
    actions.record_revocation(actor=staff, record=record, reason="Letter of 3 May", received_via="post")
    with pytest.raises(ConsentRequired) as refused:
        actions.require(subject, purpose)
    assert refused.value.reason == ConsentReason.REVOKED
    assert f"revoked their consent to {PHRASES[purpose]}" in refused.value.message
    # A check about a moment before the revocation (an output made then) still finds the record.
    assert actions.require(subject, purpose, at=before) == record


@pytest.mark.parametrize("purpose", list(Purpose))
def test_consent_not_yet_valid_is_refused_until_it_starts(purpose, make_subject, sign) -> None:
    subject = make_subject()
    starts = timezone.now() + timedelta(days=10)
    record = sign(subject, [purpose.value], valid_from=starts)
    with pytest.raises(ConsentRequired) as refused:
        actions.require(subject, purpose)
    assert refused.value.reason == ConsentReason.NOT_YET_VALID
    assert "is not valid yet" in refused.value.message
    assert actions.require(subject, purpose, at=starts + timedelta(minutes=1)) == record


def test_a_later_consent_covers_after_an_earlier_one_expired(make_subject, sign) -> None:
    subject = make_subject()
    first_end = timezone.now() + timedelta(days=10)
    sign(subject, [Purpose.TRAIN_IDENTITY.value], expires_at=first_end)
    second = sign(subject, [Purpose.TRAIN_IDENTITY.value], expires_at=timezone.now() + timedelta(days=400))
    assert actions.require(subject, Purpose.TRAIN_IDENTITY, at=first_end + timedelta(days=1)) == second


def test_unknown_purpose_is_a_programming_error(make_subject) -> None:
    with pytest.raises(ValueError):
        actions.require(make_subject(), "sell_likeness")
