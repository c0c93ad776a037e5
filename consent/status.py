"""A subject's consent status, derived from its rows (never stored, so it can never disagree with them).

Reads related rows through `.all()`, so a list page that prefetches
STATUS_PREFETCH computes every status without a query per subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from consent.models import (
    ConsentLink,
    ConsentRecord,
    DeletionCertificate,
    DeliveryKind,
    ErasureRequest,
    Purpose,
    Subject,
)

STATUS_PREFETCH = ("records__revocation", "links__record", "deletion_certificates", "erasure_requests")
LINK_STATUS_PREFETCH = ("record", "deliveries")


@dataclass(frozen=True)
class SubjectStatus:
    code: str
    label: str
    purposes: tuple[str, ...] = ()
    until: datetime | None = None

    @property
    def purpose_labels(self) -> list[str]:
        return [Purpose(value).label for value in self.purposes]


def _revoked(record: ConsentRecord, at: datetime) -> bool:
    revocation = getattr(record, "revocation", None)
    return revocation is not None and revocation.revoked_at <= at


def _in_force(records: list[ConsentRecord], moment: datetime) -> list[ConsentRecord]:
    return [
        r
        for r in records
        if r.valid_from <= moment
        and (r.expires_at is None or moment < r.expires_at)
        and not _revoked(r, moment)
    ]


@dataclass(frozen=True)
class PurposeInForce:
    """One purpose a subject's consent covers now, and when that ends (None: until revoked)."""

    purpose: str
    label: str
    until: datetime | None


def purposes_in_force(subject: Subject, at: datetime | None = None) -> list[PurposeInForce]:
    """Each purpose separately: one record may end sooner than another that covers other purposes, so
    the subject-wide "until" cannot tell staff how long, say, generation stays allowed."""
    moment = at or timezone.now()
    ends: dict[str, list[datetime | None]] = {}
    for record in _in_force(list(subject.records.all()), moment):
        for purpose in record.purposes:
            ends.setdefault(purpose, []).append(record.expires_at)
    return [
        PurposeInForce(
            purpose,
            Purpose(purpose).label,
            None if None in dates else max(date for date in dates if date is not None),
        )
        for purpose, dates in sorted(ends.items())
    ]


def subject_status(subject: Subject, at: datetime | None = None) -> SubjectStatus:
    moment = at or timezone.now()
    records = sorted(subject.records.all(), key=lambda r: r.signed_at, reverse=True)
    live = _in_force(records, moment)
    certificates = [
        c for c in subject.deletion_certificates.all() if c.scope == DeletionCertificate.Scope.SUBJECT
    ]
    if any(c.completed_at is None for c in certificates):
        return SubjectStatus("erasing", "Erasure in progress (key destroyed)")
    if live:
        purposes = tuple(sorted({p for r in live for p in r.purposes}))
        ends = [r.expires_at for r in live]
        until = None if None in ends else max(end for end in ends if end is not None)
        return SubjectStatus("active", "Consent in force", purposes, until)
    awaiting = [
        r
        for r in subject.erasure_requests.all()
        if r.trigger == ErasureRequest.Trigger.REVOCATION and r.state == ErasureRequest.State.PENDING
    ]
    if awaiting:
        return SubjectStatus(
            "erasure_pending",
            "Consent revoked: erasure awaits a tenant admin's confirmation",
            until=awaiting[0].deadline,
        )
    future = [r for r in records if r.valid_from > moment and not _revoked(r, moment)]
    if future:
        return SubjectStatus(
            "not_yet_valid", "Consent signed, not valid yet", until=min(r.valid_from for r in future)
        )
    waiting = [
        link
        for link in subject.links.all()
        if getattr(link, "record", None) is None and link.sign_by > moment
    ]
    if waiting:
        return SubjectStatus(
            "awaiting_signature",
            "Consent link sent, not signed yet",
            until=max(link.sign_by for link in waiting),
        )
    if certificates:
        last = max(certificates, key=lambda c: c.started_at)
        return SubjectStatus(
            "erased", f"Erased ({last.get_trigger_display().lower()})", until=last.completed_at
        )
    if records:
        if _revoked(records[0], moment):
            return SubjectStatus("revoked", "Consent revoked")
        return SubjectStatus("expired", "Consent expired")
    return SubjectStatus("no_consent", "No consent")


@dataclass(frozen=True)
class LinkStatus:
    """What staff see of a link instead of the link itself: was it delivered, can it still be signed."""

    delivery: str  # delivered | failed | not_sent: the last e-mail of the link itself
    delivery_label: str
    delivered_at: datetime | None
    signed: bool
    open: bool  # can still be signed, so it may be re-sent or signed in person

    @property
    def label(self) -> str:
        if self.signed:
            return "Signed"
        return self.delivery_label if self.open else "Not signed; can no longer be signed"


def link_status(link: ConsentLink, at: datetime | None = None) -> LinkStatus:
    """Reads `link.deliveries.all()` and `link.record` (prefetch LINK_STATUS_PREFETCH for a list)."""
    moment = at or timezone.now()
    attempts = sorted(
        (d for d in link.deliveries.all() if d.kind == DeliveryKind.LINK),
        key=lambda d: (d.attempted_at, d.pk),
    )
    delivered = [d.attempted_at for d in attempts if d.ok]
    if not attempts:
        delivery, label = "not_sent", "Not e-mailed yet"
    elif attempts[-1].ok:
        delivery, label = "delivered", "E-mailed to the subject, not signed yet"
    else:
        delivery, label = "failed", f"E-mail failed ({attempts[-1].error}); re-send it"
    signed = getattr(link, "record", None) is not None
    return LinkStatus(
        delivery=delivery,
        delivery_label=label,
        delivered_at=max(delivered) if delivered else None,
        signed=signed,
        open=not signed and moment <= link.sign_by,
    )
