"""Consent links, the subject's signature and revocation.

Only the subject signs. The link is e-mailed to the subject's contact address
and shown to nobody else (consent.actions.delivery); a signature on it is
evidence that its signer read that mailbox. The signing and revoking steps
refuse a logged-in session of the product outright (require_anonymous_signer):
a user of Likeness is never the subject of a consent, so a staff member who
somehow holds a link cannot sign or revoke from their account.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from audit.actions import record as audit
from consent.actions.common import Actor, ConsentActionError, InvalidLinkError, acting_user, format_day
from consent.actions.delivery import deliver_link
from consent.actions.erasure import begin_erasure, holds_data
from consent.actions.erasure_requests import (
    erases_at_once,
    open_erasure_request,
    supersede_revocation_requests,
)
from consent.actions.gate import in_period, records_in_force
from consent.actions.retention import refresh_retention
from consent.actions.subjects import check_contact_address
from consent.locks import locked_link, locked_subject
from consent.models import (
    CaptureChannel,
    ConsentLink,
    ConsentRecord,
    ConsentRevocation,
    ConsentTemplate,
    DeliveryKind,
    ErasureRequest,
    ErasureTrigger,
    InPersonHandover,
    Purpose,
    Representation,
    RevocationChannel,
    Subject,
)
from consent.tokens import InvalidLinkTokenError, make_link_token, read_link_token, token_fingerprint
from tenancy.permissions import require_perm

MIN_INTENDED_USES_CHARS = 20


class SignedInUserError(ConsentActionError):
    """A logged-in session of the product tried a signing step: only the subject may, never a user."""


def _clean_list(values: Iterable[str]) -> list[str]:
    return sorted({value.strip() for value in values if value and value.strip()})


def send_consent_link(
    *,
    actor: Actor,
    subject: Subject,
    template: ConsentTemplate,
    purposes: Iterable[str],
    intended_uses: str,
    identity_verification: str,
    site_url: str,
    channels: Iterable[str] = (),
    territories: Iterable[str] = (),
    valid_from: datetime | None = None,
    expires_at: datetime | None = None,
    sign_within_hours: int | None = None,
) -> ConsentLink:
    """Ask the subject to consent: terms fixed now, the link e-mailed to the subject's address only.

    `site_url` (scheme and host) starts the e-mailed URL. The link is committed
    before the e-mail goes out, and the e-mail's outcome is a delivery row of the
    link (`link.deliveries`): a failure leaves the link pending, to be re-sent.
    """
    tenant = subject.tenant
    require_perm(actor, tenant, "consent.add_consentlink")
    require_perm(actor, tenant, "consent.view_subject", subject)
    if template.tenant_id != tenant.pk:
        raise ConsentActionError("That consent template belongs to another tenant.")
    address = check_contact_address(tenant, subject.contact_email)
    if not address:
        raise ConsentActionError(
            f"Add {subject.display_name}'s e-mail address first: a consent link is only ever e-mailed to the "
            "subject, never shown to staff."
        )
    try:
        offered = sorted({Purpose(value).value for value in purposes})
    except ValueError as exc:
        raise ConsentActionError(f"Unknown purpose: {exc}") from None
    if not offered:
        raise ConsentActionError("Offer at least one purpose.")
    uses = intended_uses.strip()
    if len(uses) < MIN_INTENDED_USES_CHARS:
        raise ConsentActionError(
            "Describe the intended uses specifically (what, where, for how long); "
            f"at least {MIN_INTENDED_USES_CHARS} characters."
        )
    verification = identity_verification.strip()
    if not verification:
        raise ConsentActionError("Say how the subject's identity was verified.")
    now = timezone.now()
    start = valid_from or now
    if expires_at is not None and expires_at <= max(start, now):
        raise ConsentActionError("The consent must end after it starts, and in the future.")
    hours = sign_within_hours or settings.LIKENESS_CONSENT_LINK_HOURS
    if not 1 <= hours <= 24 * 90:
        raise ConsentActionError("A link may be valid for signing between 1 hour and 90 days.")
    link = ConsentLink(
        tenant=tenant,
        subject=subject,
        template=template,
        purposes_offered=offered,
        intended_uses=uses,
        channels=_clean_list(channels),
        territories=_clean_list(territories),
        valid_from=start,
        expires_at=expires_at,
        identity_verification=verification,
        sign_by=now + timedelta(hours=hours),
        sent_to=address,
        created_at=now,
        created_by=acting_user(actor),
    )
    link.token_sha256 = token_fingerprint(make_link_token(link.public_id, link.created_at))
    with transaction.atomic(durable=True):
        link.save()
        audit(
            tenant=tenant,
            action="consent.link_sent",
            actor=actor,
            target=link,
            payload={"subject_id": subject.pk, "template_id": template.pk, "purposes": offered},
        )
    with transaction.atomic(durable=True):
        deliver_link(link=locked_link(link), actor=actor, site_url=site_url, at=timezone.now(), resend=False)
    return link


def resolve_link(token: str) -> ConsentLink:
    """The link a token names, across tenants: the token (unguessable, signed) is what names the tenant.

    This is the consent app's one lookup without a request tenant; the subject
    has no account, so the signed token is the credential.
    """
    try:
        public_id = read_link_token(token)
    except InvalidLinkTokenError as exc:
        raise InvalidLinkError("This consent link is not valid. Ask the sender for a new one.") from exc
    link = (
        ConsentLink.dangerously_unscoped.select_related("tenant", "subject", "template")
        .filter(public_id=public_id)
        .first()
    )
    if link is None or not constant_time_compare(link.token_sha256, token_fingerprint(token)):
        raise InvalidLinkError("This consent link is not valid. Ask the sender for a new one.")
    return link


def require_anonymous_signer(user: Actor, link: ConsentLink, step: str) -> None:
    """Refuse, and audit in the link's tenant, a logged-in user at any step (view, code, sign, revoke).

    Call it outside a transaction: the refusal's audit entry must stay when the
    caller turns the error into a 403.
    """
    if user is None or not user.is_authenticated:
        return
    with transaction.atomic(durable=True):
        audit(
            tenant=link.tenant,
            action="consent.sign_refused",
            actor=user,
            target=link,
            payload={"link_id": link.pk, "step": step},
        )
    raise SignedInUserError(
        "You are signed in to Likeness. A consent is signed or withdrawn only by the person it concerns, "
        "never from a Likeness account: sign out or use a private window."
    )


@dataclass(frozen=True)
class SignerVerification:
    """How the signer proved to be the subject, copied into the record as evidence."""

    channel: CaptureChannel
    delivered_to: str
    delivered_at: datetime
    code_verified_at: datetime | None = None
    handover: InPersonHandover | None = None


def last_delivery_at(link: ConsentLink, kind: DeliveryKind, before: datetime) -> datetime | None:
    """When the link (or a code) was last accepted for delivery, up to `before`; None if it never was."""
    delivery = (
        link.deliveries.filter(kind=kind, ok=True, attempted_at__lte=before).order_by("-attempted_at").first()
    )
    return delivery.attempted_at if delivery is not None else None


def record_signature(
    *,
    link: ConsentLink,
    verification: SignerVerification,
    purposes: Iterable[str],
    full_name: str,
    representation: str,
    representation_detail: str,
    ip: str | None,
    user_agent: str,
    at: datetime,
) -> ConsentRecord:
    """The record, inside the caller's transaction with the subject locked (consent.locks order)."""
    tenant = link.tenant
    subject = locked_subject(link.subject)
    if ConsentRecord.objects.for_tenant(tenant).filter(link=link).exists():
        raise ConsentActionError("This link has already been used to sign. You can revoke your consent here.")
    if at > link.sign_by:
        raise ConsentActionError(
            f"This link could be signed until {format_day(link.sign_by)}. Ask {tenant.name} for a new one."
        )
    try:
        ticked = sorted({Purpose(value).value for value in purposes})
    except ValueError:
        raise ConsentActionError("Unknown purpose ticked.") from None
    if not ticked:
        raise ConsentActionError(
            "You did not tick any purpose, so nothing was signed. That is fine: nothing happens without "
            "your consent and saying no has no consequence."
        )
    if not set(ticked) <= set(link.purposes_offered):
        raise ConsentActionError("A purpose that was not offered in this link cannot be granted.")
    signer = full_name.strip()
    if len(signer) < 2:
        raise ConsentActionError("Type your full name to sign.")
    try:
        represented = Representation(representation).value
    except ValueError:
        raise ConsentActionError("Say whether you were represented (counsel, union, or none).") from None
    valid_from = max(link.valid_from, at)
    if link.expires_at is not None and link.expires_at <= valid_from:
        raise ConsentActionError(
            f"The consent period offered has already ended. Ask {tenant.name} for a new link."
        )
    record = ConsentRecord.objects.for_tenant(tenant).create(
        subject=subject,
        link=link,
        template=link.template,
        template_version=link.template.version,
        template_sha256=link.template.sha256,
        retention_schedule=subject.retention_schedule,
        purposes=ticked,
        intended_uses=link.intended_uses,
        channels=link.channels,
        territories=link.territories,
        representation=represented,
        representation_detail=representation_detail.strip()[:300],
        identity_verification=link.identity_verification,
        valid_from=valid_from,
        expires_at=link.expires_at,
        capture_channel=verification.channel,
        signer_full_name=signer[:200],
        signed_at=at,
        signer_ip=ip or None,
        signer_user_agent=user_agent[:500],
        link_token_sha256=link.token_sha256,
        delivered_to=verification.delivered_to,
        delivered_at=verification.delivered_at,
        code_verified_at=verification.code_verified_at,
        handover=verification.handover,
    )
    if at > subject.last_interaction_at:
        subject.last_interaction_at = at
        subject.save(update_fields=["last_interaction_at"])
    refresh_retention(subject)
    supersede_revocation_requests(subject, at)
    audit(
        tenant=tenant,
        action="consent.signed",
        target=record,
        payload={
            "subject_id": subject.pk,
            "link_id": link.pk,
            "template_id": link.template_id,
            "template_sha256": link.template.sha256,
            "purposes": ticked,
            "representation": represented,
            "capture_channel": verification.channel.value,
            "handover_id": verification.handover.pk if verification.handover is not None else None,
        },
    )
    return record


def sign_consent(
    *,
    token: str,
    purposes: Iterable[str],
    full_name: str,
    representation: str,
    representation_detail: str = "",
    ip: str | None = None,
    user_agent: str = "",
    session_user: Actor = None,
    at: datetime | None = None,
) -> ConsentRecord:
    """The subject signs on the e-mailed link's page: each purpose ticked separately, typed full name.

    `session_user` is whoever the request is logged in as: any user is refused.
    """
    moment = at or timezone.now()
    link = resolve_link(token)
    require_anonymous_signer(session_user, link, "sign")
    with transaction.atomic():
        delivered_at = last_delivery_at(link, DeliveryKind.LINK, moment)
        if delivered_at is None:
            raise ConsentActionError(
                "This link was never delivered, so it cannot be signed. "
                f"Ask {link.tenant.name} to re-send it."
            )
        verification = SignerVerification(
            channel=CaptureChannel.SIGNED_LINK, delivered_to=link.sent_to, delivered_at=delivered_at
        )
        return record_signature(
            link=link,
            verification=verification,
            purposes=purposes,
            full_name=full_name,
            representation=representation,
            representation_detail=representation_detail,
            ip=ip,
            user_agent=user_agent,
            at=moment,
        )


def _revoke(
    *,
    record: ConsentRecord,
    channel: RevocationChannel,
    actor: Actor,
    reason: str,
    received_via: str,
    ip: str | None,
    user_agent: str,
    at: datetime,
) -> ConsentRevocation:
    """Write the revocation (the gate refuses from now on), then start or request the erasure it calls for.

    The erasure begins at once when the subject withdraws themselves, when the
    actor may erase anyway (admins, the system) or when no consent was in force
    before it (the erasure was due already); staff who record the revocation
    that ends the last consent in force open an erasure request instead
    (consent.actions.erasure_requests).
    """
    tenant = record.tenant
    with transaction.atomic():
        subject = locked_subject(record.subject)
        # A consent that came into force since an earlier request (no sweep has seen it yet) supersedes it.
        supersede_revocation_requests(subject, at)
        existing = ConsentRevocation.objects.for_tenant(tenant).filter(record=record).first()
        if existing is not None:
            # A double submit changes nothing; but the subject's own word ends any wait for an admin.
            if channel == RevocationChannel.SUBJECT_LINK and not records_in_force(subject, at):
                begin_erasure(subject, trigger=ErasureTrigger.REVOCATION, actor=actor, reason="")
            return existing
        revocation = ConsentRevocation.objects.for_tenant(tenant).create(
            record=record,
            revoked_at=at,
            channel=channel,
            reason=reason,
            received_via=received_via,
            recorded_by=acting_user(actor),
            ip=ip or None,
            user_agent=user_agent[:500],
        )
        audit(
            tenant=tenant,
            action="consent.revoked",
            actor=actor,
            target=revocation,
            payload={"record_id": record.pk, "subject_id": subject.pk, "channel": channel.value},
        )
        if records_in_force(subject, at) or not holds_data(subject):
            return revocation
        if (
            channel == RevocationChannel.SUBJECT_LINK
            or erases_at_once(actor, subject)
            or not in_period(record, at)
        ):
            begin_erasure(subject, trigger=ErasureTrigger.REVOCATION, actor=actor, reason="")
        else:
            open_erasure_request(
                subject, trigger=ErasureRequest.Trigger.REVOCATION, actor=actor, at=at, revocation=revocation
            )
    return revocation


def revoke_via_link(
    *,
    token: str,
    ip: str | None = None,
    user_agent: str = "",
    session_user: Actor = None,
    at: datetime | None = None,
) -> ConsentRevocation:
    """Withdrawal by the subject: one action on the same page where they signed (never from an account)."""
    link = resolve_link(token)
    require_anonymous_signer(session_user, link, "revoke")
    record = ConsentRecord.objects.for_tenant(link.tenant).filter(link=link).first()
    if record is None:
        raise ConsentActionError("Nothing was signed with this link, so there is nothing to revoke.")
    return _revoke(
        record=record,
        channel=RevocationChannel.SUBJECT_LINK,
        actor=None,
        reason="",
        received_via="",
        ip=ip,
        user_agent=user_agent,
        at=at or timezone.now(),
    )


def record_revocation(
    *, actor: Actor, record: ConsentRecord, reason: str, received_via: str, at: datetime | None = None
) -> ConsentRevocation:
    """Staff record a withdrawal the subject made by other means (letter, email, phone), with a reason.

    Every use stops at once. If it ends the last consent in force, an admin's recording erases at
    once; staff's opens an erasure request that waits for an admin (revocation.erasure_request).
    """
    require_perm(actor, record.tenant, "consent.add_consentrevocation")
    if not reason.strip() or not received_via.strip():
        raise ConsentActionError("Say how the withdrawal was received and give its reason or wording.")
    return _revoke(
        record=record,
        channel=RevocationChannel.STAFF_RECORDED,
        actor=actor,
        reason=reason.strip(),
        received_via=received_via.strip()[:100],
        ip=None,
        user_agent="",
        at=at or timezone.now(),
    )
