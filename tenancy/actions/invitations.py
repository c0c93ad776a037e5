"""Invitations: the only way an existing or new account joins a tenant besides the operator's commands."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.base_user import BaseUserManager
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit.actions import record
from tenancy.actions.tenants import locked_tenant
from tenancy.models import Invitation, InvitationStatus, Membership, Role, Tenant
from tenancy.permissions import UserLike, require_perm

MAX_PENDING_INVITATIONS = 50  # per tenant, pending at once
MAX_INVITATIONS_PER_DAY = 100  # per tenant, created in any 24 hours
MAX_INVITATION_SENDS = 5  # per invitation, the first send included


class InvitationRefusedError(Exception):
    """An invitation link that cannot be used as asked; `status` is the HTTP answer, `message` says why."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str  # goes only into the e-mail; the row stores its SHA-256


def _token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token(invitation: Invitation, now: datetime) -> str:
    token = secrets.token_urlsafe(32)
    invitation.token_sha256 = _token_sha256(token)
    invitation.last_sent_at = now
    invitation.expires_at = now + timedelta(hours=django_settings.LIKENESS_INVITATION_HOURS)
    invitation.emailed_at = None
    return token


def _clean_email(email: str) -> str:
    address = email.strip()
    if len(address) > 254:
        raise ValidationError({"email": "An e-mail address has at most 254 characters."})
    try:
        validate_email(address)
    except ValidationError:
        raise ValidationError({"email": f"{address!r} is not an e-mail address."}) from None
    return BaseUserManager.normalize_email(address)


def _pending_invitations(tenant: Tenant, now: datetime) -> QuerySet[Invitation]:
    return Invitation.objects.for_tenant(tenant).filter(
        accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    )


def _sent(invitation: Invitation, actor: UserLike | None) -> None:
    record(
        tenant=invitation.tenant,
        action="membership.invitation_sent",
        actor=actor,
        target=invitation,
        payload={"role": invitation.role, "expires_at": invitation.expires_at, "send": invitation.send_count},
    )


@transaction.atomic
def invite_member(
    *, actor: UserLike | None, tenant: Tenant, email: str, role: Role | str
) -> IssuedInvitation:
    """Invite an e-mail address into the tenant with a role; the caller e-mails the token.

    Whether an account with the address exists anywhere is never looked up
    here, so nothing the admin sees depends on it. The audit entry holds no
    address (the log is append-only; the address stays erasable on the row).
    """
    require_perm(actor, tenant, "tenancy.add_invitation")
    role = Role(role)
    address = _clean_email(email)
    locked_tenant(tenant)
    now = timezone.now()
    if Membership.objects.filter(tenant=tenant, user__email__iexact=address).exists():
        raise ValidationError({"email": f"{address} belongs to a member of {tenant.name} already."})
    pending = _pending_invitations(tenant, now)
    if pending.filter(email__iexact=address).exists():
        raise ValidationError({"email": f"{address} has a pending invitation: re-send that one instead."})
    if pending.count() >= MAX_PENDING_INVITATIONS:
        raise ValidationError(
            f"{tenant.name} has {MAX_PENDING_INVITATIONS} pending invitations, the most allowed: "
            "revoke some, or wait until they are accepted or expire."
        )
    today = Invitation.objects.for_tenant(tenant).filter(created_at__gt=now - timedelta(days=1)).count()
    if today >= MAX_INVITATIONS_PER_DAY:
        raise ValidationError(
            f"{tenant.name} sent {MAX_INVITATIONS_PER_DAY} invitations in the last 24 hours, "
            "the most allowed: try again later."
        )
    invitation = Invitation(
        tenant=tenant,
        email=address,
        role=role,
        invited_by_id=actor.pk if actor is not None and actor.is_authenticated else None,
    )
    token = _new_token(invitation, now)
    invitation.save()
    _sent(invitation, actor)
    return IssuedInvitation(invitation, token)


def _locked_invitation(invitation: Invitation) -> Invitation:
    """Tenant row first, then the invitation: the order every tenancy write takes."""
    tenant = locked_tenant(invitation.tenant)
    return (
        Invitation.objects.for_tenant(tenant)
        .select_related("tenant")
        .select_for_update()
        .get(pk=invitation.pk)
    )


@transaction.atomic
def resend_invitation(*, actor: UserLike | None, invitation: Invitation) -> IssuedInvitation:
    """A new token (the old link stops working) and a fresh expiry, for a mail that failed or got lost."""
    require_perm(actor, invitation.tenant, "tenancy.add_invitation")
    invitation = _locked_invitation(invitation)
    status = invitation.status()
    if status != InvitationStatus.PENDING:
        raise ValidationError(f"This invitation is {status.label.lower()}: invite the address again instead.")
    if invitation.send_count >= MAX_INVITATION_SENDS:
        raise ValidationError(f"This invitation was sent {MAX_INVITATION_SENDS} times, the most allowed.")
    token = _new_token(invitation, timezone.now())
    invitation.send_count += 1
    invitation.save(update_fields=["token_sha256", "last_sent_at", "expires_at", "emailed_at", "send_count"])
    _sent(invitation, actor)
    return IssuedInvitation(invitation, token)


def mark_invitation_emailed(invitation: Invitation) -> None:
    """The mail server took the e-mail of the invitation's current token (not audited: the send was).

    Matched on the token digest, so a re-send in the meantime is never marked by the older mail.
    """
    now = timezone.now()
    Invitation.objects.for_tenant(invitation.tenant).filter(
        pk=invitation.pk, token_sha256=invitation.token_sha256
    ).update(emailed_at=now)
    invitation.emailed_at = now


@transaction.atomic
def revoke_invitation(*, actor: UserLike | None, invitation: Invitation) -> Invitation:
    require_perm(actor, invitation.tenant, "tenancy.revoke_invitation")
    invitation = _locked_invitation(invitation)
    status = invitation.status()
    if status in (InvitationStatus.ACCEPTED, InvitationStatus.REVOKED):
        raise ValidationError(f"This invitation is {status.label.lower()} already.")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    record(
        tenant=invitation.tenant,
        action="membership.invitation_revoked",
        actor=actor,
        target=invitation,
        payload={"role": invitation.role},
    )
    return invitation


_UNUSABLE = {
    InvitationStatus.EXPIRED: "This invitation has expired. Ask whoever invited you for a new one.",
    InvitationStatus.REVOKED: "This invitation was withdrawn by the tenant.",
    InvitationStatus.ACCEPTED: "This invitation has been used already; each one works once.",
}


def _refuse_unless_pending(invitation: Invitation) -> None:
    status = invitation.status()
    if status != InvitationStatus.PENDING:
        raise InvitationRefusedError(_UNUSABLE[status], 410)


def resolve_invitation(token: str) -> Invitation:
    """The pending invitation a link's token names, across tenants: the token is what names the tenant.

    The tenancy app's one lookup without a request tenant, like consent's
    `resolve_link`: the invitee may have no account yet, so the token is the credential.
    """
    invitation = (
        Invitation.dangerously_unscoped.select_related("tenant")
        .filter(token_sha256=_token_sha256(token))
        .first()
    )
    if invitation is None:
        raise InvitationRefusedError(
            "This invitation link is not valid. Check that it was copied whole.", 404
        )
    _refuse_unless_pending(invitation)
    return invitation


def is_invited_address(user: Any, invitation: Invitation) -> bool:
    """Whether the account's e-mail address is the invited one (case aside)."""
    email = getattr(user, "email", "") or ""
    return bool(email) and email.strip().lower() == invitation.email.lower()


def _accept(invitation: Invitation, user: Any, *, new_account: bool) -> Membership:
    invitation = _locked_invitation(invitation)
    _refuse_unless_pending(invitation)  # again, under the lock: single use
    tenant = invitation.tenant
    if Membership.objects.filter(tenant=tenant, user_id=user.pk).exists():
        raise InvitationRefusedError(f"You are a member of {tenant.name} already.", 400)
    membership = Membership.objects.create(tenant=tenant, user=user, role=invitation.role)
    invitation.accepted_at, invitation.accepted_by = timezone.now(), user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    record(
        tenant=tenant,
        action="membership.invitation_accepted",
        actor=user,
        target=membership,
        payload={
            "invitation_id": invitation.pk,
            "user_id": user.pk,
            "role": invitation.role,
            "new_account": new_account,
        },
    )
    return membership


@transaction.atomic
def accept_invitation(*, token: str, user: Any) -> Membership:
    """The logged-in invitee joins. The account must have the invited address: the token
    alone (a forwarded or leaked link) does not let another existing account in."""
    invitation = resolve_invitation(token)
    if not user.is_authenticated or not user.is_active:
        raise InvitationRefusedError("Log in first to accept this invitation.", 403)
    if not is_invited_address(user, invitation):
        raise InvitationRefusedError(
            "This invitation was sent to another e-mail address than your account's. Log out and "
            "accept it with the account of that address, or create one from this page.",
            403,
        )
    return _accept(invitation, user, new_account=False)


@transaction.atomic
def accept_invitation_with_new_account(*, token: str, username: str, password: str) -> Membership:
    """An invitee without an account creates one with the invited address and joins.

    The link reached that address, which stands for owning it. An address that
    already has an account logs in with it instead, so no second account shares it.
    """
    invitation = resolve_invitation(token)
    user_model = get_user_model()
    if user_model._default_manager.filter(email__iexact=invitation.email).exists():
        raise InvitationRefusedError(
            "An account with this e-mail address exists: log in with it to accept the invitation.", 400
        )
    user = user_model(**{user_model.USERNAME_FIELD: username.strip(), "email": invitation.email})
    errors: dict[str, list[str]] = {}
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as error:
        errors.update(error.message_dict)
    try:
        password_validation.validate_password(password, user)
    except ValidationError as error:
        errors["password"] = list(error.messages)
    if errors:
        raise ValidationError(errors)
    user.set_password(password)
    user.save()
    return _accept(invitation, user, new_account=True)
