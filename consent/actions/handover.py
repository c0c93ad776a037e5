"""Signing in person: staff hand over a device, the subject proves to be the link's addressee with a code.

1. Staff start a handover for a pending link (`start_in_person_signing`,
   audited). An 8-digit code goes by e-mail to the link's address only, and is
   stored only as a keyed hash; staff get a handover token for a page under
   /consent/in-person/ that shows nothing signable without the code.
2. On that page, on the device the subject uses, the code is entered
   (`verify_in_person_code`). A wrong code counts; at MAX_CODE_ATTEMPTS the
   handover is void and staff must start a new one. The right code works once
   and binds the handover to that browser session (a proof kept in the session,
   its SHA-256 on the row) for SIGN_WITHIN after the code was entered.
3. That session signs (`sign_in_person`): the record says in_person_code, when
   the code was delivered and entered, and to which address it went.

A logged-in session of the product is refused at every step, as on the link page.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from audit.actions import record as audit
from consent.actions.common import Actor, ConsentActionError, InvalidLinkError, acting_user, format_day
from consent.actions.delivery import check_deliverable, check_delivery_budget, check_link_open, deliver
from consent.actions.signing import SignerVerification, record_signature, require_anonymous_signer
from consent.locks import locked_handover, locked_link, locked_subject
from consent.models import (
    CaptureChannel,
    ConsentLink,
    ConsentRecord,
    DeliveryKind,
    HandoverVoidReason,
    InPersonHandover,
    LinkDelivery,
)
from consent.tokens import (
    CODE_DIGITS,
    InvalidLinkTokenError,
    code_digest,
    make_handover_token,
    new_code,
    read_handover_token,
)
from tenancy.permissions import require_perm

CODE_VALID_FOR = timedelta(minutes=15)
MAX_CODE_ATTEMPTS = 5
SIGN_WITHIN = timedelta(minutes=30)  # after the code: a device left behind does not stay signable


@dataclass(frozen=True)
class StartedHandover:
    handover: InPersonHandover
    token: str  # for the handover page's URL, which staff open on the subject's device; it cannot sign alone
    delivery: LinkDelivery  # the code's e-mail: if it failed, nobody can use this handover


def _void(handover: InPersonHandover, reason: HandoverVoidReason, actor: Actor, at: datetime) -> None:
    handover.voided_at = at
    handover.void_reason = reason
    handover.save(update_fields=["voided_at", "void_reason"])
    audit(
        tenant=handover.tenant,
        action="consent.in_person_voided",
        actor=actor,
        target=handover,
        payload={"link_id": handover.link_id, "reason": reason.value},
    )


def start_in_person_signing(
    *, actor: Actor, link: ConsentLink, at: datetime | None = None
) -> StartedHandover:
    """A new handover for a pending link (voiding any earlier one); the code goes to the subject only."""
    tenant = link.tenant
    require_perm(actor, tenant, "consent.add_consentlink")
    require_perm(actor, tenant, "consent.view_subject", link.subject)
    with transaction.atomic(durable=True):
        link = locked_link(link)
        now = at or timezone.now()
        check_link_open(link, now)
        check_deliverable(link)
        check_delivery_budget(link, DeliveryKind.CODE, now)
        for earlier in link.handovers.filter(voided_at__isnull=True).select_for_update():
            _void(earlier, HandoverVoidReason.REPLACED, actor, now)
        handover = InPersonHandover(
            tenant=tenant,
            link=link,
            code_expires_at=now + CODE_VALID_FOR,
            started_at=now,
            started_by=acting_user(actor),
        )
        code = new_code()
        handover.code_hmac = code_digest(handover.public_id, code)
        handover.save()
        audit(
            tenant=tenant,
            action="consent.in_person_started",
            actor=actor,
            target=handover,
            payload={"link_id": link.pk, "subject_id": link.subject_id},
        )
        delivery = deliver(
            link=link,
            kind=DeliveryKind.CODE,
            actor=actor,
            at=now,
            email_subject=f"Your code to sign {tenant.name}'s consent form",
            template="consent/email/code.txt",
            context={"code": code, "expires_at": handover.code_expires_at},
            handover=handover,
        )
    return StartedHandover(
        handover=handover,
        token=make_handover_token(handover.public_id, handover.started_at),
        delivery=delivery,
    )


def resolve_handover(token: str) -> InPersonHandover:
    """The handover a token names, across tenants (the signed token names the tenant, as for links)."""
    try:
        public_id = read_handover_token(token)
    except InvalidLinkTokenError as exc:
        raise InvalidLinkError(
            "This signing page is not valid. Ask the person with you to start again."
        ) from exc
    handover = (
        InPersonHandover.dangerously_unscoped.select_related(
            "tenant", "link__tenant", "link__subject", "link__template"
        )
        .filter(public_id=public_id)
        .first()
    )
    if handover is None:
        raise InvalidLinkError("This signing page is not valid. Ask the person with you to start again.")
    return handover


def _usable(handover: InPersonHandover, at: datetime) -> None:
    tenant_name = handover.link.tenant.name
    if ConsentRecord.objects.for_tenant(handover.tenant).filter(link=handover.link).exists():
        raise ConsentActionError("This consent has been signed already; nothing more to do here.")
    if handover.voided_at is not None:
        raise ConsentActionError(
            f"This in-person signing is closed ({handover.get_void_reason_display().lower()}). "
            f"Ask {tenant_name} to start a new one."
        )
    if at > handover.link.sign_by:
        raise ConsentActionError(f"This consent could be signed until {format_day(handover.link.sign_by)}.")


def verify_in_person_code(
    *, token: str, code: str, session_user: Actor = None, at: datetime | None = None
) -> str:
    """Check the code once; returns the proof the signing session keeps. Wrong codes count and commit."""
    handover = resolve_handover(token)
    require_anonymous_signer(session_user, handover.link, "code")
    refusal = ""
    proof = secrets.token_urlsafe(32)
    with transaction.atomic(durable=True):
        handover = locked_handover(handover)
        now = at or timezone.now()
        _usable(handover, now)
        if handover.verified_at is not None:
            raise ConsentActionError(
                "The code for this signing was entered already. Ask the person with you to start again."
            )
        if not handover.deliveries.filter(ok=True).exists():
            raise ConsentActionError("No code could be e-mailed for this signing. Ask to start again.")
        if now > handover.code_expires_at:
            raise ConsentActionError("This code has expired. Ask the person with you to start again.")
        entered = "".join(code.split())[: CODE_DIGITS * 2]
        if constant_time_compare(code_digest(handover.public_id, entered), handover.code_hmac):
            handover.verified_at = now
            handover.session_sha256 = hashlib.sha256(proof.encode()).hexdigest()
            handover.save(update_fields=["verified_at", "session_sha256"])
            audit(
                tenant=handover.tenant,
                action="consent.in_person_verified",
                target=handover,
                payload={"link_id": handover.link_id, "failed_attempts": handover.failed_attempts},
            )
        else:
            handover.failed_attempts += 1
            handover.save(update_fields=["failed_attempts"])
            left = MAX_CODE_ATTEMPTS - handover.failed_attempts
            if left <= 0:
                _void(handover, HandoverVoidReason.TOO_MANY_ATTEMPTS, None, now)
                refusal = (
                    "That code is not right either, and that was the last try: this signing is closed. "
                    f"Ask {handover.link.tenant.name} to start a new one."
                )
            else:
                audit(
                    tenant=handover.tenant,
                    action="consent.in_person_code_refused",
                    target=handover,
                    payload={"link_id": handover.link_id, "failed_attempts": handover.failed_attempts},
                )
                refusal = f"That code is not right. {left} {'try' if left == 1 else 'tries'} left."
    if refusal:
        raise ConsentActionError(refusal)
    return proof


def session_is_verified(handover: InPersonHandover, proof: str) -> bool:
    """Whether this browser session entered the handover's code (the page shows the form only then)."""
    return bool(handover.session_sha256) and constant_time_compare(
        hashlib.sha256(proof.encode()).hexdigest(), handover.session_sha256
    )


def sign_in_person(
    *,
    token: str,
    proof: str,
    purposes: Iterable[str],
    full_name: str,
    representation: str,
    representation_detail: str = "",
    ip: str | None = None,
    user_agent: str = "",
    session_user: Actor = None,
    at: datetime | None = None,
) -> ConsentRecord:
    """The subject signs on the handover page, in the browser session that entered the code."""
    handover = resolve_handover(token)
    require_anonymous_signer(session_user, handover.link, "sign")
    moment = at or timezone.now()
    with transaction.atomic(durable=True):
        link = handover.link
        locked_subject(link.subject)  # the subject before the handover (consent.locks)
        handover = locked_handover(handover)
        _usable(handover, moment)
        if handover.verified_at is None or not session_is_verified(handover, proof):
            raise ConsentActionError("Enter the code from the e-mail first.")
        if moment > handover.verified_at + SIGN_WITHIN:
            raise ConsentActionError(
                "Too much time passed since the code was entered. Ask the person with you to start again."
            )
        code_delivery = handover.deliveries.filter(ok=True).order_by("-attempted_at").first()
        assert code_delivery is not None  # a code is verified only when its e-mail was accepted
        return record_signature(
            link=link,
            verification=SignerVerification(
                channel=CaptureChannel.IN_PERSON_CODE,
                delivered_to=code_delivery.sent_to,
                delivered_at=code_delivery.attempted_at,
                code_verified_at=handover.verified_at,
                handover=handover,
            ),
            purposes=purposes,
            full_name=full_name,
            representation=representation,
            representation_detail=representation_detail,
            ip=ip,
            user_agent=user_agent,
            at=moment,
        )
