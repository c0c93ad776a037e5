"""The enforcement gate: which consent covers a purpose now, and the refusal that says why not."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from consent.actions.common import ConsentReason, ConsentRequiredError, format_day
from consent.models import ConsentRecord, Purpose, Subject

PURPOSE_PHRASES = {
    Purpose.TRAIN_IDENTITY: "training an identity model",
    Purpose.GENERATE_IMAGES: "generating new images",
    Purpose.EDIT_PHOTOS: "editing existing photos",
}


def revoked_as_of(record: ConsentRecord, at: datetime) -> datetime | None:
    # The reverse one-to-one raises (an AttributeError) when there is no revocation.
    revocation = getattr(record, "revocation", None)
    if revocation is not None and revocation.revoked_at <= at:
        return revocation.revoked_at
    return None


def in_period(record: ConsentRecord, at: datetime) -> bool:
    """Within the consent's validity period: in force at `at` unless it was revoked."""
    return record.valid_from <= at and (record.expires_at is None or at < record.expires_at)


def in_force(record: ConsentRecord, at: datetime) -> bool:
    return in_period(record, at) and revoked_as_of(record, at) is None


def subject_records(subject: Subject) -> list[ConsentRecord]:
    return list(subject.records.select_related("revocation").order_by("-signed_at", "-id"))


def records_in_force(subject: Subject, at: datetime | None = None) -> list[ConsentRecord]:
    moment = at or timezone.now()
    return [record for record in subject_records(subject) if in_force(record, moment)]


def require(subject: Subject, purpose: Purpose | str, at: datetime | None = None) -> ConsentRecord:
    """The consent record covering `purpose` for `subject` at `at` (now), or ConsentRequiredError.

    Called when a job is queued, when a worker starts it and before any output is
    released; nobody is exempt (tenant admins included: the ELVIS Act).
    """
    return _decide(subject, Purpose(purpose), at or timezone.now(), subject_records(subject))


def check_each(
    subject: Subject, purposes: list[str], at: datetime | None = None
) -> list[tuple[str, ConsentRecord | ConsentRequiredError]]:
    """`require()`'s answer for each purpose, from one read of the subject's records.

    For the API's consent check: the same decision per purpose as the gate, without reading the
    records once per purpose.
    """
    moment = at or timezone.now()
    records = subject_records(subject)
    answers: list[tuple[str, ConsentRecord | ConsentRequiredError]] = []
    for purpose in purposes:
        try:
            answers.append((purpose, _decide(subject, Purpose(purpose), moment, records)))
        except ConsentRequiredError as refusal:
            answers.append((purpose, refusal))
    return answers


def _decide(
    subject: Subject, wanted: Purpose, moment: datetime, all_records: list[ConsentRecord]
) -> ConsentRecord:
    """The gate's decision from the subject's records, newest first (subject_records)."""
    phrase = PURPOSE_PHRASES[wanted]
    granting = [record for record in all_records if record.grants(wanted)]
    covering = [record for record in granting if in_force(record, moment)]
    if covering:
        # The one that lasts longest: the natural record to cite on the job.
        return max(covering, key=lambda r: (r.expires_at is None, r.expires_at or moment, r.signed_at))
    name = subject.display_name

    def refuse(reason: ConsentReason, message: str) -> ConsentRequiredError:
        return ConsentRequiredError(subject_id=subject.pk, purpose=wanted, reason=reason, message=message)

    if not granting:
        if not all_records:
            raise refuse(
                ConsentReason.MISSING, f"{name} has not signed any consent, so {phrase} is not allowed."
            )
        raise refuse(ConsentReason.MISSING, f"{name} has not consented to {phrase}.")
    latest = granting[0]
    revoked_at = revoked_as_of(latest, moment)
    if revoked_at is not None:
        raise refuse(
            ConsentReason.REVOKED, f"{name} revoked their consent to {phrase} on {format_day(revoked_at)}."
        )
    if latest.valid_from > moment:
        raise refuse(
            ConsentReason.NOT_YET_VALID,
            f"{name}'s consent to {phrase} is not valid yet: it starts on {format_day(latest.valid_from)}.",
        )
    assert latest.expires_at is not None  # neither revoked nor in the future nor open-ended: it ended
    raise refuse(
        ConsentReason.EXPIRED, f"{name}'s consent to {phrase} expired on {format_day(latest.expires_at)}."
    )


def require_any(subject: Subject, at: datetime) -> None:
    """Collecting any data of a subject needs a consent in force (BIPA 15(b): before collection)."""
    records = subject_records(subject)
    if any(in_force(record, at) for record in records):
        return
    reasons = []
    for purpose in Purpose:
        try:
            _decide(subject, purpose, at, records)
        except ConsentRequiredError as error:
            reasons.append(error.reason)
    # Say why a consent that existed no longer counts (expired, revoked, not yet valid) before "missing".
    reason = next((r for r in reasons if r != ConsentReason.MISSING), ConsentReason.MISSING)
    raise ConsentRequiredError(
        subject_id=subject.pk,
        purpose=None,
        reason=reason,
        message=f"No consent of {subject.display_name} is in force, so no file of them can be stored.",
    )
