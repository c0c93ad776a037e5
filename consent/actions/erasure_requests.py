"""The two-person rule: an erasure that staff start waits for a tenant admin's confirmation.

Erasure is irreversible, so one staff member alone must not be able to cause it.
Who erases at once: the subject (withdrawing on their own link), the system
(sweeps, commands) and a member holding consent.erase_subject (tenant admins, who
may erase on request anyway). Anyone else who records the revocation that ends the
last consent in force, or marks the purpose satisfied, opens an ErasureRequest with
a deadline (LIKENESS_ERASURE_CONFIRM_HOURS). A revocation stops every use at once
regardless: the gate reads the revocation row, not the request.

What ends a request: an admin other than the requester confirms it (a revocation is
erased, a purpose clock starts) or declines it (purpose only: a revocation must be
followed by erasure); a consent in force again supersedes a revocation request; the
sweep erases a revocation whose deadline passed unconfirmed; any erasure for another
reason overtakes it (consent.actions.erasure.begin_erasure). docs/compliance.md
has the rules and the why.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.actions import record as audit
from consent.actions.common import Actor, ConsentActionError, acting_user, format_day
from consent.actions.erasure import begin_erasure, close_request
from consent.actions.gate import records_in_force
from consent.actions.retention import start_purpose_clock
from consent.locks import locked_subject
from consent.models import ConsentRevocation, DeletionCertificate, ErasureRequest, ErasureTrigger, Subject
from tenancy.permissions import has_perm, require_perm

MAX_DECISION_REASON_CHARS = 2000


def erases_at_once(actor: Actor, subject: Subject) -> bool:
    """The system and members allowed to erase on request need no second person."""
    return actor is None or has_perm(actor, subject.tenant, "consent.erase_subject", subject)


def pending_request(subject: Subject, trigger: ErasureRequest.Trigger) -> ErasureRequest | None:
    return subject.erasure_requests.filter(trigger=trigger, state=ErasureRequest.State.PENDING).first()


def format_moment(value: datetime) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z")


def open_erasure_request(
    locked: Subject,
    *,
    trigger: ErasureRequest.Trigger,
    actor: Actor,
    at: datetime,
    revocation: ConsentRevocation | None = None,
) -> ErasureRequest:
    """Under the subject lock: the pending request for `trigger`, with its deadline and an audit entry."""
    request = ErasureRequest.objects.for_tenant(locked.tenant).create(
        subject=locked,
        trigger=trigger,
        revocation=revocation,
        requested_by=acting_user(actor),
        requested_at=at,
        deadline=at + timedelta(hours=settings.LIKENESS_ERASURE_CONFIRM_HOURS),
    )
    audit(
        tenant=locked.tenant,
        action="erasure.requested",
        actor=actor,
        target=request,
        payload={
            "subject_id": locked.pk,
            "trigger": request.trigger,
            "revocation_id": revocation.pk if revocation is not None else None,
            "deadline": request.deadline.isoformat(),
        },
    )
    return request


def supersede_revocation_requests(locked: Subject, at: datetime) -> None:
    """Under the subject lock: a consent in force again closes the revocation requests waiting to erase."""
    in_force = records_in_force(locked, at)
    if not in_force:
        return
    for request in locked.erasure_requests.filter(
        trigger=ErasureRequest.Trigger.REVOCATION, state=ErasureRequest.State.PENDING
    ):
        close_request(
            request,
            ErasureRequest.State.SUPERSEDED,
            actor=None,
            at=at,
            records_in_force=sorted(record.pk for record in in_force),
        )


def erase_at_deadline(locked: Subject, request: ErasureRequest) -> DeletionCertificate | None:
    """Under the subject lock (the sweep): a revocation unconfirmed by its deadline is erased all the same."""
    close_request(
        request,
        ErasureRequest.State.DEADLINE_PASSED,
        actor=None,
        at=timezone.now(),
        deadline=request.deadline.isoformat(),
    )
    request.certificate = begin_erasure(
        locked,
        trigger=ErasureTrigger.REVOCATION,
        actor=None,
        reason=f"Revocation recorded by staff, unconfirmed at its deadline (erasure request #{request.pk}).",
        enqueue=False,
    )
    request.save(update_fields=["certificate"])
    return request.certificate


def _locked_pending(actor: Actor, request: ErasureRequest) -> tuple[Subject, ErasureRequest]:
    """Under the subject lock (the caller's transaction): the request as it is now, still pending."""
    require_perm(actor, request.tenant, "consent.confirm_erasurerequest", request)
    locked = locked_subject(request.subject)
    current = ErasureRequest.objects.for_tenant(locked.tenant).get(pk=request.pk)
    if not current.is_pending:
        raise ConsentActionError(
            f"This erasure request is no longer pending: {current.get_state_display().lower()}."
        )
    if actor is not None and current.requested_by_id == actor.pk:
        raise ConsentActionError(
            "Under the two-person rule someone other than the requester decides on an erasure request."
        )
    return locked, current


def confirm_erasure_request(*, actor: Actor, request: ErasureRequest) -> ErasureRequest:
    """A tenant admin confirms: a revocation's erasure begins now; a purpose's retention clock starts now.

    A revocation request whose subject has a consent in force again (one that came
    into force since) is closed as superseded instead, and nothing is erased.
    """
    now = timezone.now()
    with transaction.atomic():
        locked, current = _locked_pending(actor, request)
        if current.trigger == ErasureRequest.Trigger.REVOCATION and records_in_force(locked, now):
            supersede_revocation_requests(locked, now)
            current.refresh_from_db()
            return current
        close_request(current, ErasureRequest.State.CONFIRMED, actor=actor, at=now)
        if current.trigger == ErasureRequest.Trigger.REVOCATION:
            current.certificate = begin_erasure(
                locked,
                trigger=ErasureTrigger.REVOCATION,
                actor=actor,
                reason=(
                    "Revocation recorded by staff, confirmed by a tenant admin "
                    f"(erasure request #{current.pk})."
                ),
            )
            current.save(update_fields=["certificate"])
        else:
            start_purpose_clock(locked, actor=actor, at=now)
    return current


def decline_erasure_request(*, actor: Actor, request: ErasureRequest, reason: str) -> ErasureRequest:
    """A tenant admin declines a 'purpose satisfied' request, saying why; a revocation cannot be declined."""
    text = reason.strip()
    if not text:
        raise ConsentActionError("Give the reason for declining: the requester reads it.")
    if len(text) > MAX_DECISION_REASON_CHARS:
        raise ConsentActionError(f"Keep the reason under {MAX_DECISION_REASON_CHARS} characters.")
    with transaction.atomic():
        _, current = _locked_pending(actor, request)
        if current.trigger == ErasureRequest.Trigger.REVOCATION:
            raise ConsentActionError(
                "A revocation's erasure cannot be declined: the subject withdrew their consent and the law "
                "requires erasure. If you doubt the revocation is genuine, ask the subject to sign a new "
                "consent: it supersedes this request."
            )
        current.decision_reason = text  # kept on the row, never in the audit payload (free text)
        close_request(current, ErasureRequest.State.DECLINED, actor=actor, at=timezone.now())
    return current


def mark_purpose_satisfied(
    *, actor: Actor, subject: Subject, at: datetime | None = None
) -> ErasureRequest | None:
    """The campaign is over. An admin's mark starts the schedule's clock at once (None is returned);
    staff's opens a request that waits for an admin (returned), and starts nothing meanwhile.
    """
    require_perm(actor, subject.tenant, "consent.close_purpose_subject", subject)
    moment = at or timezone.now()
    with transaction.atomic():
        locked = locked_subject(subject)
        if locked.purpose_satisfied_at is not None:
            raise ConsentActionError(
                f"The purpose was already marked satisfied on {format_day(locked.purpose_satisfied_at)}."
            )
        pending = pending_request(locked, ErasureRequest.Trigger.PURPOSE_SATISFIED)
        if erases_at_once(actor, locked):
            if pending is not None:  # the admin's own mark is the decision the request waited for
                close_request(pending, ErasureRequest.State.CONFIRMED, actor=actor, at=moment)
            start_purpose_clock(locked, actor=actor, at=moment)
            return None
        if pending is not None:
            raise ConsentActionError(
                f"The purpose was marked satisfied on {format_day(pending.requested_at)}; that awaits a "
                f"tenant admin's confirmation (due by {format_moment(pending.deadline)})."
            )
        return open_erasure_request(
            locked, trigger=ErasureRequest.Trigger.PURPOSE_SATISFIED, actor=actor, at=moment
        )
