"""Delivering a signing link or an in-person code to the subject's contact address, and nowhere else.

The e-mail is the only carrier of a signing-capable link: no page, API answer,
message or log shows it to staff. Every attempt is a write-once LinkDelivery row
(link or code, to which address, when, accepted or the mail error's class) and
an audit entry, so staff see whether to re-send and a legal reviewer sees where
the credential of a signature went. A failed e-mail loses nothing: the link
stays pending and can be re-sent while it can still be signed.

Deliveries of one link are decided under the link's row lock, so the limits
below are exact; the mail is sent while that lock is held, bounded by
EMAIL_TIMEOUT (on PostgreSQL it blocks only that link's other deliveries).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from audit.actions import record as audit
from consent import mail
from consent.actions.common import Actor, ConsentActionError, acting_user, format_day
from consent.actions.subjects import check_contact_address
from consent.locks import locked_link
from consent.models import ConsentLink, ConsentRecord, DeliveryKind, InPersonHandover, LinkDelivery
from consent.tokens import make_link_token, token_fingerprint
from tenancy.permissions import require_perm

# A subject's mailbox is not something staff can flood, by mistake or on purpose.
MIN_DELIVERY_INTERVAL = timedelta(minutes=1)  # between two accepted e-mails of one kind about one link
MAX_LINK_DELIVERIES = 5  # the first e-mail and four re-sends
MAX_CODE_DELIVERIES = 5  # in-person signings started for one link


class DeliveryLimitError(ConsentActionError):
    """Too soon after the last such e-mail (retry_after seconds), or too many of them (retry_after None)."""

    def __init__(self, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def signing_url(site_url: str, link: ConsentLink) -> str:
    token = make_link_token(link.public_id, link.created_at)
    return site_url.rstrip("/") + reverse("consent-sign", kwargs={"token": token})


def check_link_open(link: ConsentLink, now: datetime) -> None:
    """Only a link that can still be signed is worth delivering (revoking works without a new e-mail)."""
    if ConsentRecord.objects.for_tenant(link.tenant).filter(link=link).exists():
        raise ConsentActionError("This link has been signed; the subject keeps the e-mail they signed from.")
    if now > link.sign_by:
        raise ConsentActionError(
            f"This link could be signed until {format_day(link.sign_by)}; send a new link instead."
        )


def check_deliverable(link: ConsentLink) -> None:
    """The link's own address, still nobody's in the tenant: the only place its e-mails may go."""
    if not link.sent_to:
        raise ConsentActionError("This link has no address to e-mail; add the subject's and send a new link.")
    check_contact_address(link.tenant, link.sent_to)


def check_delivery_budget(link: ConsentLink, kind: DeliveryKind, now: datetime) -> None:
    """Call under the link's row lock (consent.locks.locked_link), so two requests cannot both pass.

    Per kind of e-mail (a code right after the link's e-mail is fine). The
    interval runs from the last e-mail the mail server accepted, so staff may
    retry at once after an outage; the count includes failed attempts too.
    """
    attempts = list(link.deliveries.filter(kind=kind).order_by("attempted_at", "id"))
    accepted = [attempt.attempted_at for attempt in attempts if attempt.ok]
    if accepted and now < accepted[-1] + MIN_DELIVERY_INTERVAL:
        wait = max(1, math.ceil((accepted[-1] + MIN_DELIVERY_INTERVAL - now).total_seconds()))
        raise DeliveryLimitError(
            f"The last {kind.label.lower()} e-mail about this link went out less than a minute ago; "
            f"try again in {wait} seconds.",
            retry_after=wait,
        )
    limit, what = (
        (MAX_LINK_DELIVERIES, "the link was e-mailed")
        if kind == DeliveryKind.LINK
        else (MAX_CODE_DELIVERIES, "in-person signing was started")
    )
    if len(attempts) >= limit:
        raise DeliveryLimitError(
            f"For this link {what} {limit} times already; send the subject a new link instead.",
            retry_after=None,
        )


def deliver(
    *,
    link: ConsentLink,
    kind: DeliveryKind,
    actor: Actor,
    at: datetime,
    email_subject: str,
    template: str,
    context: dict[str, object],
    handover: InPersonHandover | None = None,
    resend: bool = False,
) -> LinkDelivery:
    """E-mail the link's address and record the attempt, inside the caller's transaction and link lock."""
    tenant = link.tenant
    error = mail.send(
        to=link.sent_to,
        subject=email_subject,
        template=template,
        context={"tenant_name": tenant.name, **context},
    )
    delivery = LinkDelivery.objects.for_tenant(tenant).create(
        link=link,
        kind=kind,
        handover=handover,
        sent_to=link.sent_to,
        attempted_at=at,
        ok=not error,
        error=error,
        requested_by=acting_user(actor),
    )
    audit(
        tenant=tenant,
        action="consent.delivery_failed" if error else "consent.delivered",
        actor=actor,
        target=delivery,
        payload={
            "link_id": link.pk,
            "kind": kind.value,
            "resend": resend,
            "handover_id": handover.pk if handover is not None else None,
            "error": error,
        },
    )
    return delivery


def deliver_link(
    *, link: ConsentLink, actor: Actor, site_url: str, at: datetime, resend: bool
) -> LinkDelivery:
    """The signing link, to the address the link was created for (a new address needs a new link)."""
    return deliver(
        link=link,
        kind=DeliveryKind.LINK,
        actor=actor,
        at=at,
        email_subject=f"{link.tenant.name} asks for your consent",
        template="consent/email/link.txt",
        context={"url": signing_url(site_url, link), "sign_by": link.sign_by},
        resend=resend,
    )


def resend_consent_link(
    *, actor: Actor, link: ConsentLink, site_url: str, at: datetime | None = None
) -> LinkDelivery:
    """E-mail the same link again (its token is deterministic) while it can be signed; limited per link."""
    require_perm(actor, link.tenant, "consent.add_consentlink")
    require_perm(actor, link.tenant, "consent.view_subject", link.subject)
    with transaction.atomic(durable=True):
        link = locked_link(link)
        now = at or timezone.now()
        check_link_open(link, now)
        check_deliverable(link)
        if token_fingerprint(make_link_token(link.public_id, link.created_at)) != link.token_sha256:
            raise ConsentActionError(
                "This link was made before links went to the subject only, by e-mail, and cannot be "
                "re-sent. Send a new link."
            )
        check_delivery_budget(link, DeliveryKind.LINK, now)
        return deliver_link(link=link, actor=actor, site_url=site_url, at=now, resend=True)
