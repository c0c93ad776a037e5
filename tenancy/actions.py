"""Every write to tenants, memberships and invitations, with its permission check and audit entry.

Views, API viewsets and commands call these and nothing else. `actor=None`
means the system (management commands such as seed_demo); every other caller
passes the acting user, whose permission is checked here.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from audit.actions import record
from audit.chain import AuditPayloadError, canonical_json, normalize_payload
from audit.models import AuditEntry
from tenancy.authentication import hash_key, new_key
from tenancy.models import ApiToken, Invitation, InvitationStatus, Membership, Role, Tenant
from tenancy.permissions import UserLike, require_perm

MAX_SETTINGS_BYTES = 32 * 1024
MAX_SETTINGS_DEPTH = 16
MAX_NAME_LENGTH = Tenant._meta.get_field("name").max_length or 200
# A settings change is audited key by key within this many bytes (the audit payload allows 16 KB);
# values up to SMALL_VALUE_BYTES appear as they are, larger ones by their SHA-256.
SETTINGS_AUDIT_BUDGET = 8 * 1024
SMALL_VALUE_BYTES = 256
MAX_ACTIVE_API_TOKENS = 20
MAX_ENDED_API_TOKENS = 50
MAX_TOKEN_NAME_CHARS = 100


def _lock(tenant: Tenant) -> Tenant:
    return Tenant.objects.select_for_update().get(pk=tenant.pk)


@transaction.atomic
def create_tenant(*, name: str, slug: str, actor: UserLike | None = None) -> Tenant:
    """A new brand; its chain starts with `tenant.created`. Only the system or a superuser may do this."""
    if actor is not None and not getattr(actor, "is_superuser", False):
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied("Only the operator (superuser or a management command) creates tenants.")
    tenant = Tenant(name=_clean_name(name), slug=slug.strip())
    tenant.full_clean()
    tenant.save()
    record(tenant=tenant, action="tenant.created", actor=actor, target=tenant, payload={"slug": tenant.slug})
    return tenant


def _admin_count(tenant: Tenant) -> int:
    return Membership.objects.filter(tenant=tenant, role=Role.ADMIN).count()


@transaction.atomic
def add_member(*, tenant: Tenant, user: Any, role: Role | str) -> Membership:
    """The operator's direct way in (create_tenant, seed_demo): audited with the system as actor.

    No user can call this for another account: tenant admins invite (`invite_member`),
    and the invited person accepts.
    """
    role = Role(role)
    _lock(tenant)
    if Membership.objects.filter(tenant=tenant, user_id=user.pk).exists():
        raise ValidationError(f"{user} is already a member of {tenant.name}.")
    membership = Membership.objects.create(tenant=tenant, user=user, role=role)
    record(
        tenant=tenant,
        action="membership.added",
        target=membership,
        payload={"user_id": user.pk, "role": role.value},
    )
    return membership


@transaction.atomic
def change_member_role(*, actor: UserLike | None, membership: Membership, role: Role | str) -> Membership:
    tenant = membership.tenant
    require_perm(actor, tenant, "tenancy.change_membership")
    role = Role(role)
    _lock(tenant)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    previous = membership.role
    if previous == role:
        return membership
    if previous == Role.ADMIN and _admin_count(tenant) == 1:
        raise ValidationError("A tenant keeps at least one admin: promote someone else first.")
    membership.role = role
    membership.save(update_fields=["role"])
    record(
        tenant=tenant,
        action="membership.role_changed",
        actor=actor,
        target=membership,
        payload={"user_id": membership.user_id, "from": previous, "to": role.value},
    )
    return membership


@transaction.atomic
def remove_member(*, actor: UserLike | None, membership: Membership) -> None:
    tenant = membership.tenant
    require_perm(actor, tenant, "tenancy.delete_membership")
    _lock(tenant)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == Role.ADMIN and _admin_count(tenant) == 1:
        raise ValidationError("A tenant keeps at least one admin: promote someone else first.")
    record(
        tenant=tenant,
        action="membership.removed",
        actor=actor,
        target=membership,
        payload={"user_id": membership.user_id, "role": membership.role},
    )
    membership.delete()


# --- invitations ------------------------------------------------------------------------------
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
    _lock(tenant)
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
    tenant = _lock(invitation.tenant)
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


def remember_tenant_choice(membership: Membership) -> None:
    """Note that the user chose this tenant, so it opens on their next login.

    Not audited: it changes nobody's access, only which of the user's own
    tenants they see first.
    """
    Membership.objects.filter(pk=membership.pk).update(last_selected_at=timezone.now())


def _clean_name(name: str) -> str:
    """One line of printable text: the name goes into e-mail subjects, where a line break injects headers."""
    cleaned = name.strip()
    if not cleaned:
        raise ValidationError({"name": "A tenant name cannot be empty."})
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ValidationError({"name": f"A tenant name has at most {MAX_NAME_LENGTH} characters."})
    if len(cleaned.splitlines()) > 1:
        raise ValidationError({"name": "A tenant name must be one line."})
    for character in cleaned:
        if not character.isprintable():
            raise ValidationError(
                {"name": f"A tenant name must be printable text; U+{ord(character):04X} is not."}
            )
    return cleaned


def _too_deep(value: Any) -> bool:
    """Whether JSON containers nest deeper than MAX_SETTINGS_DEPTH (walked level by level, no recursion)."""
    level = [value]
    for _ in range(MAX_SETTINGS_DEPTH + 1):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return True


def _validate_settings(settings: Any) -> dict[str, Any]:
    if not isinstance(settings, dict) or not all(isinstance(key, str) for key in settings):
        raise ValidationError({"settings": "Tenant settings must be a JSON object with string keys."})
    if _too_deep(settings):
        raise ValidationError(
            {"settings": f"Tenant settings are nested more than {MAX_SETTINGS_DEPTH} levels."}
        )
    try:
        size = len(canonical_json(settings).encode())
    except (TypeError, ValueError) as error:
        raise ValidationError({"settings": f"Tenant settings must be plain JSON: {error}"}) from None
    if size > MAX_SETTINGS_BYTES:
        raise ValidationError({"settings": f"Tenant settings are limited to {MAX_SETTINGS_BYTES} bytes."})
    return settings


def _sha256(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def _fits_the_audit_log(value: Any) -> bool:
    """Small, and a plain fact: the audit log refuses e.g. float lists as possible feature vectors."""
    if len(canonical_json(value).encode()) > SMALL_VALUE_BYTES:
        return False
    try:
        normalize_payload({"value": value})
    except AuditPayloadError:
        return False
    return True


def _key_change(old: dict[str, Any], new: dict[str, Any], key: str) -> dict[str, Any]:
    before, after = old.get(key), new.get(key)
    if _fits_the_audit_log(before) and _fits_the_audit_log(after):
        return {"from": before, "to": after}
    return {
        "from_sha256": _sha256(before) if key in old else None,
        "to_sha256": _sha256(after) if key in new else None,
    }


def _settings_change(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """What a settings change records: digests of the whole old and new settings, then key by key.

    Settings may hold 32 KB and an audit payload 16 KB, so whole values never go in:
    each changed key is listed (small values as they are, others by SHA-256) until
    SETTINGS_AUDIT_BUDGET is used, and the rest are counted in `unlisted_keys`.
    The whole-settings digests still pin exactly which settings were replaced by which.
    """
    changed = [
        key
        for key in sorted(set(old) | set(new))
        if (key in old) != (key in new) or canonical_json(old.get(key)) != canonical_json(new.get(key))
    ]
    if not changed:
        return None
    keys: dict[str, Any] = {}
    used = unlisted = 0
    for key in changed:
        detail = _key_change(old, new, key)
        size = len(canonical_json({key: detail}).encode())
        if used + size > SETTINGS_AUDIT_BUDGET:
            unlisted += 1
            continue
        keys[key] = detail
        used += size
    change: dict[str, Any] = {"from_sha256": _sha256(old), "to_sha256": _sha256(new), "keys": keys}
    if unlisted:
        change["unlisted_keys"] = unlisted
    return change


@transaction.atomic
def update_tenant(
    *, actor: UserLike | None, tenant: Tenant, name: str | None = None, settings: dict[str, Any] | None = None
) -> Tenant:
    """Rename the tenant and/or replace its settings; the audit entry says what changed (_settings_change)."""
    require_perm(actor, tenant, "tenancy.change_tenant")
    locked = _lock(tenant)
    changes: dict[str, Any] = {}
    if name is not None:
        cleaned = _clean_name(name)
        if cleaned != locked.name:
            changes["name"] = {"from": locked.name, "to": cleaned}
            locked.name = cleaned
    if settings is not None:
        new = _validate_settings(settings)
        settings_change = _settings_change(locked.settings, new)
        if settings_change is not None:
            changes["settings"] = settings_change
        locked.settings = new
    if not changes:
        return locked
    locked.full_clean()
    locked.save(update_fields=["name", "settings"])
    record(tenant=locked, action="tenant.settings_changed", actor=actor, target=locked, payload=changes)
    tenant.name, tenant.settings = locked.name, locked.settings
    return locked


def _tenants_of(user: Any) -> list[Tenant]:
    return list(Tenant.objects.filter(memberships__user_id=user.pk).order_by("pk"))


def _record_for_user(
    user: Any, action: str, actor: UserLike | None, payload: dict[str, Any] | None = None
) -> None:
    """`action` about `user` in each of the user's tenants: each tenant's reviewers see their members."""
    for tenant in _tenants_of(user):
        record(tenant=tenant, action=action, actor=actor, target=user, payload=payload)


@transaction.atomic
def record_login(user: AbstractBaseUser) -> None:
    _record_for_user(user, "auth.login", user)


@transaction.atomic
def record_logout(user: AbstractBaseUser) -> None:
    _record_for_user(user, "auth.logout", user)


def _record_once_per_window(username: str, action: str, payload: dict[str, Any]) -> None:
    """`action` about the account named `username`, at most once per cool-off window in each of its tenants.

    Anonymous traffic decides how often this runs, so what it may add to a
    tenant's chain is bounded by time, not by attempts. The check is repeated
    under the tenant's lock, so concurrent attempts cannot add a second entry.
    """
    user_model = get_user_model()
    user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
    if user is None:
        return
    since = timezone.now() - timedelta(minutes=django_settings.LIKENESS_LOGIN_COOLOFF_MINUTES)

    def recorded(tenant: Tenant) -> bool:
        return (
            AuditEntry.objects.for_tenant(tenant)
            .filter(action=action, target_type=user._meta.label_lower, target_id=str(user.pk), at__gte=since)
            .exists()
        )

    for tenant in _tenants_of(user):
        if recorded(tenant):
            continue
        with transaction.atomic():
            _lock(tenant)
            if not recorded(tenant):
                record(tenant=tenant, action=action, actor=None, target=user, payload=payload)


def record_login_failure(username: str) -> None:
    """A failed login for a member's account (without the attempt): the first of each window is logged."""
    _record_once_per_window(
        username, "auth.login_failed", {"window_minutes": django_settings.LIKENESS_LOGIN_COOLOFF_MINUTES}
    )


def record_lockout(username: str, failures: int | None) -> None:
    """A lockout of a member's account began (django-axes): how many failures, and for how long."""
    payload: dict[str, Any] = {"cooloff_minutes": django_settings.LIKENESS_LOGIN_COOLOFF_MINUTES}
    if failures is not None:
        payload["failures"] = failures
    _record_once_per_window(username, "auth.lockout", payload)


def _active_tokens(user: Any, now: datetime) -> QuerySet[ApiToken]:
    return ApiToken.owned_by(user).filter(revoked_at__isnull=True, expires_at__gt=now)


def issue_api_token(user: Any, *, name: str, via: str, days: int | None = None) -> tuple[ApiToken, str]:
    """A new named token of `user` and its key, audited in each of the user's tenants (never the key).

    The key is returned once and stored nowhere. `days` may only shorten the
    configured lifetime. At most MAX_ACTIVE_API_TOKENS are active at a time, and
    only the newest MAX_ENDED_API_TOKENS ended ones are kept for the owner to see.
    """
    longest = django_settings.LIKENESS_API_TOKEN_DAYS
    days = longest if days is None else days
    if not 1 <= days <= longest:
        raise ValidationError(f"A token lives from 1 to {longest} days.")
    name = name.strip()
    if not 1 <= len(name) <= MAX_TOKEN_NAME_CHARS:
        raise ValidationError(f"A token needs a name of 1 to {MAX_TOKEN_NAME_CHARS} characters.")
    with transaction.atomic():
        # The user's row lock serializes concurrent issues, so the cap holds.
        get_user_model()._default_manager.select_for_update().filter(pk=user.pk).values_list("pk").get()
        now = timezone.now()
        if _active_tokens(user, now).count() >= MAX_ACTIVE_API_TOKENS:
            raise ValidationError(
                f"You already have {MAX_ACTIVE_API_TOKENS} active API tokens: "
                "revoke one you no longer use first."
            )
        ended = (
            ApiToken.owned_by(user)
            .filter(Q(revoked_at__isnull=False) | Q(expires_at__lte=now))
            .values_list("pk", flat=True)[MAX_ENDED_API_TOKENS:]
        )
        ApiToken.objects.filter(pk__in=list(ended)).delete()
        prefix, key = new_key()
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=prefix,
            key_hash=hash_key(key),
            expires_at=now + timedelta(days=days),
        )
        _record_for_user(
            user,
            "auth.token_issued",
            user,
            {"token_id": token.pk, "name": name, "expires_at": token.expires_at.isoformat(), "via": via},
        )
    return token, key


def _end_tokens(tokens: QuerySet[ApiToken], reason: ApiToken.EndReason) -> list[int]:
    ids = list(tokens.select_for_update().filter(revoked_at__isnull=True).values_list("pk", flat=True))
    ApiToken.objects.filter(pk__in=ids).update(revoked_at=timezone.now(), revoked_reason=reason)
    return ids


@transaction.atomic
def revoke_api_token(*, actor: UserLike | None, token: ApiToken) -> None:
    """Its owner ends one token at once (operators end all of a user's with `revoke_all_api_tokens`)."""
    if actor is None or actor.pk != token.user_id:
        raise PermissionDenied("Only its owner revokes a token here.")
    reason = ApiToken.EndReason.REVOKED
    if ids := _end_tokens(ApiToken.objects.filter(pk=token.pk), reason):
        _record_for_user(token.user, "auth.token_revoked", actor, {"token_ids": ids, "reason": reason.value})


@transaction.atomic
def revoke_all_api_tokens(user: Any) -> list[int]:
    """The operator ends every active token of `user` (a leaked key, a departing employee)."""
    reason = ApiToken.EndReason.OPERATOR
    ids = _end_tokens(_active_tokens(user, timezone.now()), reason)
    _record_for_user(user, "auth.token_revoked", None, {"token_ids": ids, "reason": reason.value})
    return ids


@transaction.atomic
def record_password_change(user: Any) -> None:
    """The stored password changed, by whatever path: every active token of the user ends with it.

    Sessions need nothing here: Django derives their validity from the password
    hash, so every other session ends by itself (the changing one is kept by
    update_session_auth_hash on the dashboard's page). The actor is unknown to
    the model signal that calls this, so the entry names none.
    """
    ids = _end_tokens(_active_tokens(user, timezone.now()), ApiToken.EndReason.PASSWORD_CHANGED)
    _record_for_user(user, "auth.password_changed", None, {"revoked_token_ids": ids})
