"""The consent app's only write path: consent, retention, storage of subject files, erasure.

Views, API viewsets, tasks and the enforce_retention command call these
functions and nothing else writes consent rows. Each function checks the
actor's permission in the subject's tenant, re-reads what it needs under a row
lock on the subject, writes, and appends ID-only audit entries in the same
transaction.

Rules enforced here (docs/compliance.md has the why):
- consent is signed only by the subject, through the signed link (sign_consent
  takes a token, never a user); staff can only send links and record a
  revocation they received by other means;
- nothing of a subject is stored unless a consent is in force at that moment;
- when no consent is in force any more, erasure starts in the same transaction
  as the revocation: the subject key is destroyed first, the files follow
  (complete_erasure, on the default Celery queue, or inline in the sweep);
- every file carries retain_until and enforce_retention erases what is due.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from audit.actions import record as audit
from consent import crypto, intake, vault
from consent.erasure import registered_hooks
from consent.faults import crash_point
from consent.models import (
    Asset,
    AssetKind,
    CaptureChannel,
    ConsentLink,
    ConsentRecord,
    ConsentRevocation,
    ConsentTemplate,
    DeletionCertificate,
    ErasureTrigger,
    Purpose,
    Representation,
    RetentionSchedule,
    RevocationChannel,
    Subject,
    SubjectKey,
)
from consent.storage import private_storage, subject_prefix, walk
from consent.tokens import (
    InvalidLinkTokenError,
    consent_text_sha256,
    make_link_token,
    read_link_token,
    sha256_hex,
    token_fingerprint,
)
from tenancy.models import Tenant
from tenancy.permissions import require_perm

logger = logging.getLogger(__name__)

Actor = AbstractBaseUser | AnonymousUser | None

PURPOSE_PHRASES = {
    Purpose.TRAIN_IDENTITY: "training an identity model",
    Purpose.GENERATE_IMAGES: "generating new images",
    Purpose.EDIT_PHOTOS: "editing existing photos",
}
BIPA_DEFAULT_TITLE = "Default schedule (Illinois BIPA)"
MAX_YEARS_AFTER_LAST_INTERACTION = 3
MIN_INTENDED_USES_CHARS = 20


# --- errors ---------------------------------------------------------------------------------------
class ConsentReason(StrEnum):
    MISSING = "missing"
    EXPIRED = "expired"
    REVOKED = "revoked"
    NOT_YET_VALID = "not_yet_valid"


class ConsentRequiredError(Exception):
    """No consent in force covers what was asked; `message` says which purpose and why, in plain words."""

    def __init__(self, *, subject_id: int, purpose: str | None, reason: ConsentReason, message: str) -> None:
        super().__init__(message)
        self.subject_id = subject_id
        self.purpose = purpose
        self.reason = reason
        self.message = message


# The name later issues import: `consent.actions.ConsentRequired`.
ConsentRequired = ConsentRequiredError


class ConsentActionError(Exception):
    """A request that cannot be carried out as given; the message is meant for the person who made it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidLinkError(ConsentActionError):
    """The consent link is not one this deployment issued (or was altered)."""


# --- small helpers ----------------------------------------------------------------------------------
def _user(actor: Actor) -> Any:
    """The user to store in a `*_by` column: None for the system and for anonymous visitors (the subject)."""
    return actor if actor is not None and actor.is_authenticated else None


def _locked_subject(subject: Subject) -> Subject:
    """Re-read the subject under a row lock: consent, storage and erasure of one subject run one at a time."""
    return Subject.objects.for_tenant(subject.tenant).select_for_update().get(pk=subject.pk)


def _day(value: datetime) -> str:
    return timezone.localtime(value).strftime("%d %B %Y")


def _add_years(value: datetime, years: int) -> datetime:
    try:
        return value.replace(year=value.year + years)
    except ValueError:  # 29 February
        return value.replace(year=value.year + years, day=28)


def _clean_list(values: Iterable[str]) -> list[str]:
    return sorted({value.strip() for value in values if value and value.strip()})


# --- the enforcement gate -------------------------------------------------------------------------------
def _revoked_as_of(record: ConsentRecord, at: datetime) -> datetime | None:
    # The reverse one-to-one raises (an AttributeError) when there is no revocation.
    revocation = getattr(record, "revocation", None)
    if revocation is not None and revocation.revoked_at <= at:
        return revocation.revoked_at
    return None


def _in_force(record: ConsentRecord, at: datetime) -> bool:
    return (
        record.valid_from <= at
        and (record.expires_at is None or at < record.expires_at)
        and _revoked_as_of(record, at) is None
    )


def _records(subject: Subject) -> list[ConsentRecord]:
    return list(subject.records.select_related("revocation").order_by("-signed_at", "-id"))


def records_in_force(subject: Subject, at: datetime | None = None) -> list[ConsentRecord]:
    moment = at or timezone.now()
    return [record for record in _records(subject) if _in_force(record, moment)]


def require(subject: Subject, purpose: Purpose | str, at: datetime | None = None) -> ConsentRecord:
    """The consent record covering `purpose` for `subject` at `at` (now), or ConsentRequiredError.

    Called when a job is queued, when a worker starts it and before any output is
    released; nobody is exempt (tenant admins included: the ELVIS Act).
    """
    wanted = Purpose(purpose)
    moment = at or timezone.now()
    phrase = PURPOSE_PHRASES[wanted]
    all_records = _records(subject)
    granting = [record for record in all_records if record.grants(wanted)]
    covering = [record for record in granting if _in_force(record, moment)]
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
    revoked_at = _revoked_as_of(latest, moment)
    if revoked_at is not None:
        raise refuse(
            ConsentReason.REVOKED, f"{name} revoked their consent to {phrase} on {_day(revoked_at)}."
        )
    if latest.valid_from > moment:
        raise refuse(
            ConsentReason.NOT_YET_VALID,
            f"{name}'s consent to {phrase} is not valid yet: it starts on {_day(latest.valid_from)}.",
        )
    assert latest.expires_at is not None  # neither revoked nor in the future nor open-ended: it ended
    raise refuse(ConsentReason.EXPIRED, f"{name}'s consent to {phrase} expired on {_day(latest.expires_at)}.")


def _require_any(subject: Subject, at: datetime) -> None:
    """Collecting any data of a subject needs a consent in force (BIPA 15(b): before collection)."""
    if records_in_force(subject, at):
        return
    reasons = []
    for purpose in Purpose:
        try:
            require(subject, purpose, at)
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


# --- retention ------------------------------------------------------------------------------------------
def retention_statement(tenant_name: str, years: int, days_after_purpose: int) -> str:
    after_purpose = (
        "as soon as the purpose you consented to has been satisfied"
        if days_after_purpose == 0
        else f"no later than {days_after_purpose} days after the purpose you consented to has been satisfied"
    )
    return (
        f"{tenant_name} keeps your photos, the face measurements made from them (biometric data), the models "
        f"trained on them and the images made with them only while your consent is in force. They are "
        f"permanently destroyed at the earliest of: when you withdraw your consent; when your consent "
        f"expires; {after_purpose}; {years} year{'s' if years != 1 else ''} after your last interaction "
        f"with {tenant_name}."
    )


def schedule_in_force(tenant: Tenant, at: datetime | None = None) -> RetentionSchedule | None:
    moment = at or timezone.now()
    return (
        RetentionSchedule.objects.for_tenant(tenant)
        .filter(published_at__lte=moment)
        .order_by("-version")
        .first()
    )


def _next_version(tenant: Tenant, versions: QuerySet[Any]) -> int:
    """The next version number of a versioned document, under the tenant row lock (no two writers collide)."""
    Tenant.objects.select_for_update().filter(pk=tenant.pk).values_list("pk", flat=True).get()
    return int(versions.aggregate(latest=Max("version"))["latest"] or 0) + 1


def _publish_schedule(
    *, tenant: Tenant, actor: Actor, title: str, years: int, days_after_purpose: int, at: datetime
) -> RetentionSchedule:
    version = _next_version(tenant, RetentionSchedule.objects.for_tenant(tenant))
    statement = retention_statement(tenant.name, years, days_after_purpose)
    schedule = RetentionSchedule.objects.for_tenant(tenant).create(
        version=version,
        title=title,
        years_after_last_interaction=years,
        days_after_purpose_satisfied=days_after_purpose,
        statement=statement,
        sha256=consent_text_sha256(statement),
        published_at=at,
        published_by=_user(actor),
    )
    audit(
        tenant=tenant,
        action="retention.schedule_published",
        actor=actor,
        target=schedule,
        payload={"version": schedule.version, "sha256": schedule.sha256},
    )
    return schedule


def publish_retention_schedule(
    *,
    actor: Actor,
    tenant: Tenant,
    title: str,
    years_after_last_interaction: int,
    days_after_purpose_satisfied: int,
) -> RetentionSchedule:
    """A new schedule version (e.g. Texas CUBI); each subject keeps the version it was collected under."""
    require_perm(actor, tenant, "consent.add_retentionschedule")
    if not title.strip():
        raise ConsentActionError("Give the schedule a title (for example the jurisdiction it follows).")
    if not 1 <= years_after_last_interaction <= MAX_YEARS_AFTER_LAST_INTERACTION:
        raise ConsentActionError(
            f"Years after the last interaction must be 1 to {MAX_YEARS_AFTER_LAST_INTERACTION} (BIPA)."
        )
    if not 0 <= days_after_purpose_satisfied <= 365:
        raise ConsentActionError(
            "Days after the purpose is satisfied must be between 0 and 365 (Texas CUBI)."
        )
    with transaction.atomic():
        return _publish_schedule(
            tenant=tenant,
            actor=actor,
            title=title.strip(),
            years=years_after_last_interaction,
            days_after_purpose=days_after_purpose_satisfied,
            at=timezone.now(),
        )


def subject_retain_until(subject: Subject, at: datetime | None = None) -> datetime:
    """The latest moment the subject's data may be kept, as known at `at`: schedule clocks and consent end."""
    moment = at or timezone.now()
    schedule = subject.retention_schedule
    candidates = [_add_years(subject.last_interaction_at, schedule.years_after_last_interaction)]
    if subject.purpose_satisfied_at is not None:
        candidates.append(
            subject.purpose_satisfied_at + timedelta(days=schedule.days_after_purpose_satisfied)
        )
    ends = [
        record.expires_at
        for record in _records(subject)
        if _revoked_as_of(record, moment) is None
        and (record.expires_at is None or record.expires_at > moment)
    ]
    if ends and None not in ends:
        candidates.append(max(end for end in ends if end is not None))
    return min(candidates)


def _asset_retain_until(
    subject_until: datetime, asset_created_at: datetime, retain_for_days: int | None
) -> datetime:
    if retain_for_days is None:
        return subject_until
    return min(subject_until, asset_created_at + timedelta(days=retain_for_days))


def _refresh_retention(subject: Subject) -> None:
    until = subject_retain_until(subject)
    subject.assets.filter(retain_for_days__isnull=True).update(retain_until=until)
    for asset in subject.assets.filter(retain_for_days__isnull=False):
        asset.retain_until = _asset_retain_until(until, asset.created_at, asset.retain_for_days)
        asset.save(update_fields=["retain_until"])


def touch_subject(subject: Subject, at: datetime | None = None) -> None:
    """Record an interaction of the subject (BIPA's clock restarts); other apps call it too."""
    moment = at or timezone.now()
    with transaction.atomic():
        locked = _locked_subject(subject)
        if moment > locked.last_interaction_at:
            locked.last_interaction_at = moment
            locked.save(update_fields=["last_interaction_at"])
        _refresh_retention(locked)
    subject.last_interaction_at = locked.last_interaction_at


def mark_purpose_satisfied(*, actor: Actor, subject: Subject, at: datetime | None = None) -> Subject:
    """The campaign is over: the 'purpose satisfied' clock starts (BIPA: erase now; Texas: within a year)."""
    require_perm(actor, subject.tenant, "consent.close_purpose_subject", subject)
    moment = at or timezone.now()
    with transaction.atomic():
        locked = _locked_subject(subject)
        if locked.purpose_satisfied_at is not None:
            raise ConsentActionError(
                f"The purpose was already marked satisfied on {_day(locked.purpose_satisfied_at)}."
            )
        locked.purpose_satisfied_at = moment
        locked.save(update_fields=["purpose_satisfied_at"])
        _refresh_retention(locked)
        audit(tenant=locked.tenant, action="subject.purpose_satisfied", actor=actor, target=locked)
    return locked


# --- subjects and templates -----------------------------------------------------------------------------
def create_subject(
    *, actor: Actor, tenant: Tenant, display_name: str, contact_email: str = "", internal_reference: str = ""
) -> Subject:
    """A new subject, linked to the retention schedule in force (the BIPA default is published if none is)."""
    require_perm(actor, tenant, "consent.add_subject")
    name = display_name.strip()
    if not name:
        raise ConsentActionError("Give the subject's name.")
    email = contact_email.strip()
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise ConsentActionError(f"{email!r} is not an email address.") from None
    now = timezone.now()
    with transaction.atomic():
        schedule = schedule_in_force(tenant, now) or _publish_schedule(
            tenant=tenant,
            actor=None,
            title=BIPA_DEFAULT_TITLE,
            years=MAX_YEARS_AFTER_LAST_INTERACTION,
            days_after_purpose=0,
            at=now,
        )
        subject = Subject.objects.for_tenant(tenant).create(
            display_name=name,
            contact_email=email,
            internal_reference=internal_reference.strip(),
            retention_schedule=schedule,
            last_interaction_at=now,
            created_at=now,
            created_by=_user(actor),
        )
        audit(
            tenant=tenant,
            action="subject.created",
            actor=actor,
            target=subject,
            payload={"retention_schedule_id": schedule.pk, "retention_version": schedule.version},
        )
    return subject


def publish_consent_template(*, actor: Actor, tenant: Tenant, name: str, body: str) -> ConsentTemplate:
    """A new immutable version of a consent text, fingerprinted with SHA-256."""
    require_perm(actor, tenant, "consent.add_consenttemplate")
    title, text = name.strip(), body.strip()
    if not title or not text:
        raise ConsentActionError("A consent template needs a name and its text.")
    with transaction.atomic():
        version = _next_version(tenant, ConsentTemplate.objects.for_tenant(tenant).filter(name=title))
        template = ConsentTemplate.objects.for_tenant(tenant).create(
            name=title,
            version=version,
            body=text,
            sha256=consent_text_sha256(text),
            created_at=timezone.now(),
            created_by=_user(actor),
        )
        audit(
            tenant=tenant,
            action="consent.template_published",
            actor=actor,
            target=template,
            payload={"version": template.version, "sha256": template.sha256},
        )
    return template


# --- consent links, signing, revocation -----------------------------------------------------------------
@dataclass(frozen=True)
class IssuedLink:
    link: ConsentLink
    token: str  # shown to staff once and emailed; only its SHA-256 is stored


def send_consent_link(
    *,
    actor: Actor,
    subject: Subject,
    template: ConsentTemplate,
    purposes: Iterable[str],
    intended_uses: str,
    identity_verification: str,
    channels: Iterable[str] = (),
    territories: Iterable[str] = (),
    valid_from: datetime | None = None,
    expires_at: datetime | None = None,
    sign_within_hours: int | None = None,
) -> IssuedLink:
    """Ask the subject to consent: terms fixed now, signature only by the subject through the link."""
    tenant = subject.tenant
    require_perm(actor, tenant, "consent.add_consentlink")
    require_perm(actor, tenant, "consent.view_subject", subject)
    if template.tenant_id != tenant.pk:
        raise ConsentActionError("That consent template belongs to another tenant.")
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
        sent_to=subject.contact_email,
        created_at=now,
        created_by=_user(actor),
    )
    token = make_link_token(link.public_id)
    link.token_sha256 = token_fingerprint(token)
    with transaction.atomic():
        link.save()
        audit(
            tenant=tenant,
            action="consent.link_sent",
            actor=actor,
            target=link,
            payload={"subject_id": subject.pk, "template_id": template.pk, "purposes": offered},
        )
    return IssuedLink(link=link, token=token)


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


def sign_consent(
    *,
    token: str,
    purposes: Iterable[str],
    full_name: str,
    representation: str,
    representation_detail: str = "",
    ip: str | None = None,
    user_agent: str = "",
    at: datetime | None = None,
) -> ConsentRecord:
    """The subject signs on the link page: each purpose ticked separately, typed full name as signature."""
    moment = at or timezone.now()
    link = resolve_link(token)
    tenant = link.tenant
    with transaction.atomic():
        subject = _locked_subject(link.subject)
        if ConsentRecord.objects.for_tenant(tenant).filter(link=link).exists():
            raise ConsentActionError(
                "This link has already been used to sign. You can revoke your consent here."
            )
        if moment > link.sign_by:
            raise ConsentActionError(
                f"This link could be signed until {_day(link.sign_by)}. Ask {tenant.name} for a new one."
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
        valid_from = max(link.valid_from, moment)
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
            capture_channel=CaptureChannel.SIGNED_LINK,
            signer_full_name=signer[:200],
            signed_at=moment,
            signer_ip=ip or None,
            signer_user_agent=user_agent[:500],
            link_token_sha256=link.token_sha256,
        )
        if moment > subject.last_interaction_at:
            subject.last_interaction_at = moment
            subject.save(update_fields=["last_interaction_at"])
        _refresh_retention(subject)
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
            },
        )
    return record


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
    tenant = record.tenant
    with transaction.atomic():
        subject = _locked_subject(record.subject)
        existing = ConsentRevocation.objects.for_tenant(tenant).filter(record=record).first()
        if existing is not None:
            return existing  # a double submit of the same withdrawal changes nothing
        revocation = ConsentRevocation.objects.for_tenant(tenant).create(
            record=record,
            revoked_at=at,
            channel=channel,
            reason=reason,
            received_via=received_via,
            recorded_by=_user(actor),
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
        if not records_in_force(subject, at):
            _begin_erasure(subject, trigger=ErasureTrigger.REVOCATION, actor=actor, reason="")
    return revocation


def revoke_via_link(
    *, token: str, ip: str | None = None, user_agent: str = "", at: datetime | None = None
) -> ConsentRevocation:
    """Withdrawal by the subject: one action on the same page where they signed."""
    link = resolve_link(token)
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
    """Staff record a withdrawal the subject made by other means (letter, email, phone), with a reason."""
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


# --- storing subject files ------------------------------------------------------------------------------
def store_subject_file(
    *,
    subject: Subject,
    kind: AssetKind | str,
    data: bytes,
    content_type: str,
    extension: str,
    actor: Actor = None,
    label: str = "",
    source: Asset | None = None,
    quality: dict[str, float] | None = None,
    retain_for_days: int | None = None,
) -> Asset:
    """Encrypt `data` with the subject key and store it privately: how every app stores a subject's file.

    Refused unless a consent of the subject is in force now. The caller has
    checked its own purpose with require() and its own permission.
    """
    asset_kind = AssetKind(kind)
    now = timezone.now()
    with transaction.atomic():
        locked = _locked_subject(subject)
        _require_any(locked, now)
        subject_key = SubjectKey.objects.for_tenant(locked.tenant).filter(subject=locked).first()
        if subject_key is None:
            key_id, wrapped = vault.new_wrapped_key(locked.tenant_id)
            subject_key = SubjectKey.objects.for_tenant(locked.tenant).create(
                subject=locked, key_id=key_id, wrapped_key=wrapped, created_at=now
            )
            audit(
                tenant=locked.tenant,
                action="subject_key.created",
                target=subject_key,
                payload={"subject_id": locked.pk, "key_id": str(key_id)},
            )
        envelope = crypto.seal(vault.unwrap(subject_key), subject_key.key_id, data)
        name = vault.storage_name(
            locked.tenant_id, locked.pk, subject_key.key_id, asset_kind.value, extension
        )
        storage = private_storage()
        stored_name = storage.save(name, ContentFile(envelope))
        try:
            asset = Asset.objects.for_tenant(locked.tenant).create(
                subject=locked,
                kind=asset_kind,
                key_id=subject_key.key_id,
                storage_name=stored_name,
                sha256=sha256_hex(envelope),
                size_bytes=len(data),
                content_type=content_type,
                label=label[:255],
                source=source,
                quality=quality or {},
                retain_for_days=retain_for_days,
                retain_until=_asset_retain_until(subject_retain_until(locked), now, retain_for_days),
                created_at=now,
                created_by=_user(actor),
            )
            audit(
                tenant=locked.tenant,
                action="asset.stored",
                actor=actor,
                target=asset,
                payload={"subject_id": locked.pk, "kind": asset_kind.value},
            )
        except BaseException:
            storage.delete(stored_name)
            raise
    return asset


class UploadedPhoto(Protocol):
    """What the upload actions need of a file: Django's UploadedFile, or any named binary stream."""

    name: str | None

    def read(self, size: int = ..., /) -> bytes: ...


@dataclass(frozen=True)
class RejectedPhoto:
    name: str
    code: str
    message: str


@dataclass
class IntakeReport:
    accepted: list[Asset] = field(default_factory=list)
    rejected: list[RejectedPhoto] = field(default_factory=list)


def intake_limits() -> intake.IntakeLimits:
    return intake.IntakeLimits(
        max_bytes=settings.LIKENESS_MAX_UPLOAD_BYTES,
        max_pixels=settings.LIKENESS_MAX_IMAGE_PIXELS,
        min_face_px=settings.LIKENESS_MIN_FACE_PX,
        same_person_threshold=settings.LIKENESS_SAME_PERSON_THRESHOLD,
    )


def _store_photo(
    *, subject: Subject, actor: Actor, kind: AssetKind, clean: intake.CleanPhoto, label: str
) -> Asset:
    with transaction.atomic():
        photo = store_subject_file(
            subject=subject,
            kind=kind,
            data=clean.data,
            content_type=clean.content_type,
            extension=clean.extension,
            actor=actor,
            label=label,
            quality=clean.quality,
        )
        store_subject_file(
            subject=subject,
            kind=AssetKind.FACE_EMBEDDING,
            data=vault.embedding_to_bytes(clean.embedding),
            content_type="application/x-npy",
            extension="npy",
            actor=actor,
            source=photo,
        )
    return photo


def set_enrollment_photo(*, actor: Actor, subject: Subject, upload: UploadedPhoto) -> Asset:
    """The photo every reference photo is compared with. Set once; erasure clears it."""
    require_perm(actor, subject.tenant, "consent.upload_photos_subject", subject)
    if subject.enrollment_photo_id is not None:
        raise ConsentActionError("This subject already has an enrollment photo.")
    _require_any(subject, timezone.now())
    limits = intake_limits()
    name = getattr(upload, "name", None) or ""
    clean = intake.check_photo(intake.read_capped(upload, limits.max_bytes), name, limits)
    with transaction.atomic():
        photo = _store_photo(
            subject=subject, actor=actor, kind=AssetKind.ENROLLMENT_PHOTO, clean=clean, label=name
        )
        locked = _locked_subject(subject)
        if locked.enrollment_photo_id is not None:
            raise ConsentActionError("This subject already has an enrollment photo.")
        locked.enrollment_photo = photo
        locked.save(update_fields=["enrollment_photo"])
        audit(
            tenant=locked.tenant,
            action="subject.enrollment_photo_set",
            actor=actor,
            target=locked,
            payload={"asset_id": photo.pk},
        )
    subject.enrollment_photo = photo
    touch_subject(subject)
    return photo


def enrollment_embedding(subject: Subject) -> Any:
    photo = subject.enrollment_photo
    if photo is None:
        raise ConsentActionError(
            "Set the subject's enrollment photo first: every reference photo is compared with it."
        )
    embedding = photo.derived.filter(kind=AssetKind.FACE_EMBEDDING).order_by("id").first()
    if embedding is None:
        raise ConsentActionError(
            "The enrollment photo has no face embedding; set the enrollment photo again."
        )
    return vault.embedding_from_bytes(vault.read_asset(embedding))


def upload_reference_photos(
    *, actor: Actor, subject: Subject, uploads: Sequence[UploadedPhoto]
) -> IntakeReport:
    """Check each file on its own: every rejection gets its reason, every accepted file is kept."""
    require_perm(actor, subject.tenant, "consent.upload_photos_subject", subject)
    _require_any(subject, timezone.now())
    reference = enrollment_embedding(subject)
    limits = intake_limits()
    report = IntakeReport()
    for upload in uploads:
        name = getattr(upload, "name", None) or ""
        try:
            clean = intake.check_photo(
                intake.read_capped(upload, limits.max_bytes), name, limits, enrollment_embedding=reference
            )
        except intake.PhotoRejectedError as rejection:
            report.rejected.append(
                RejectedPhoto(name=name, code=rejection.code.value, message=rejection.message)
            )
            audit(
                tenant=subject.tenant,
                action="photo.rejected",
                actor=actor,
                target=subject,
                payload={"code": rejection.code.value},
            )
            continue
        report.accepted.append(
            _store_photo(
                subject=subject, actor=actor, kind=AssetKind.REFERENCE_PHOTO, clean=clean, label=name
            )
        )
    if report.accepted:
        touch_subject(subject)
    return report


def record_export(
    *,
    actor: Actor,
    tenant: Tenant,
    what: str,
    file_format: str,
    target: Subject | DeletionCertificate | None = None,
) -> None:
    """An export of consent evidence is itself a fact a reviewer may need: who took what, when."""
    perm = "consent.export_subject" if what == "subject_history" else "consent.export_deletioncertificate"
    require_perm(actor, tenant, perm, target if isinstance(target, Subject) else None)
    audit(
        tenant=tenant,
        action="consent.exported",
        actor=actor,
        target=target,
        payload={"what": what, "format": file_format},
    )


# --- erasure --------------------------------------------------------------------------------------------
def _enqueue_completion(certificate_id: int) -> None:
    from consent.tasks import complete_erasure_task

    complete_erasure_task.delay(certificate_id)


def _begin_erasure(
    subject: Subject,
    *,
    trigger: ErasureTrigger,
    actor: Actor,
    reason: str,
    enqueue: bool = True,
) -> DeletionCertificate | None:
    """Open a certificate and destroy the key, in the caller's transaction (which holds the subject lock).

    Idempotent: an open certificate is returned as is; a subject with neither
    key nor files gets none (there is nothing to destroy). Certificates carry
    wall-clock times, also when a sweep decides with a simulated `--now`.
    """
    tenant = subject.tenant
    open_certificate = subject.deletion_certificates.filter(completed_at__isnull=True).first()
    if open_certificate is not None:
        return open_certificate
    subject_key = SubjectKey.objects.for_tenant(tenant).filter(subject=subject).first()
    if subject_key is None and not subject.assets.exists():
        return None
    certificate = DeletionCertificate.objects.for_tenant(tenant).create(
        subject=subject,
        scope=DeletionCertificate.Scope.SUBJECT,
        trigger=trigger,
        reason=reason,
        requested_by=_user(actor),
        started_at=timezone.now(),
    )
    audit(
        tenant=tenant,
        action="erasure.started",
        actor=actor,
        target=certificate,
        payload={"subject_id": subject.pk, "trigger": trigger.value, "scope": certificate.scope},
    )
    if subject_key is not None:
        key_id = subject_key.key_id
        subject_key.delete()
        certificate.key_id = key_id
        certificate.key_destroyed_at = timezone.now()
        certificate.save(update_fields=["key_id", "key_destroyed_at"])
        audit(
            tenant=tenant,
            action="subject_key.destroyed",
            actor=actor,
            target_type="consent.subjectkey",
            target_id=str(key_id),
            payload={"subject_id": subject.pk, "certificate_id": certificate.pk},
        )
    if enqueue:
        transaction.on_commit(lambda: _enqueue_completion(certificate.pk), robust=True)
    return certificate


def erase_subject(*, actor: Actor, subject: Subject, reason: str) -> DeletionCertificate | None:
    """Erasure on request (GDPR Art. 17) by a tenant admin; consent records stay as the history."""
    require_perm(actor, subject.tenant, "consent.erase_subject", subject)
    if not reason.strip():
        raise ConsentActionError("Give the reason for the erasure (for example the request it answers).")
    with transaction.atomic():
        locked = _locked_subject(subject)
        return _begin_erasure(locked, trigger=ErasureTrigger.ADMIN, actor=actor, reason=reason.strip())


def _call_hooks(subject: Subject) -> tuple[list[str], list[str]]:
    cancelled: list[str] = []
    withdrawn: list[str] = []
    for hook in registered_hooks():
        if hook.cancel_jobs is not None:
            cancelled.extend(f"{hook.name}:{ident}" for ident in hook.cancel_jobs(subject))
    for hook in registered_hooks():
        if hook.withdraw_outputs is not None:
            withdrawn.extend(f"{hook.name}:{ident}" for ident in hook.withdraw_outputs(subject))
    return cancelled, withdrawn


def complete_erasure(certificate_id: int) -> DeletionCertificate | None:
    """Cancel jobs, withdraw outputs, delete files and rows, sweep the storage prefix, close the certificate.

    One transaction under a lock on the certificate: a crash rolls the rows back
    while the deleted files stay deleted, so a rerun redoes the rows, skips the
    missing files and counts each file once. Safe to call any number of times.
    """
    with transaction.atomic():
        certificate = (
            # Lock the certificate and the subject, never the tenant row: audit.record takes that one
            # later, and every writer takes subject before tenant, so no two of them can deadlock.
            DeletionCertificate.dangerously_unscoped.select_for_update(of=("self", "subject"))
            .select_related("tenant", "subject")
            .filter(pk=certificate_id)
            .first()
        )
        if certificate is None or certificate.completed_at is not None:
            return certificate
        subject = certificate.subject
        tenant = certificate.tenant
        storage = private_storage()
        live_key = SubjectKey.objects.for_tenant(tenant).filter(subject=subject).first()
        if certificate.scope == DeletionCertificate.Scope.SUBJECT:
            cancelled, withdrawn = _call_hooks(subject)
            doomed = subject.assets.all()
            if live_key is not None:
                # A new consent after the erasure began has its own key: its files are not this erasure's.
                doomed = doomed.exclude(key_id=live_key.key_id)
        else:
            cancelled, withdrawn = [], []
            doomed = subject.assets.filter(pk__in=certificate.planned_asset_ids)
        counts: Counter[str] = Counter()
        file_ids: list[int] = []
        for asset in doomed.order_by("id"):
            storage.delete(asset.storage_name)
            counts[asset.kind] += 1
            file_ids.append(asset.pk)
            crash_point("erasure.file_deleted")
        Asset.objects.for_tenant(tenant).filter(pk__in=file_ids).delete()
        strays = 0
        if certificate.scope == DeletionCertificate.Scope.SUBJECT:
            keep = vault.key_folder(tenant.pk, subject.pk, live_key.key_id) + "/" if live_key else None
            for name in walk(storage, subject_prefix(tenant.pk, subject.pk)):
                if keep is None or not name.startswith(keep):
                    storage.delete(name)
                    strays += 1
        certificate.destroyed_counts = dict(sorted(counts.items()))
        certificate.file_ids = file_ids
        certificate.stray_files_removed = strays
        certificate.cancelled_jobs = cancelled
        certificate.withdrawn_outputs = withdrawn
        certificate.completed_at = timezone.now()
        certificate.save()
        audit(
            tenant=tenant,
            action="erasure.completed",
            target=certificate,
            payload={
                "subject_id": subject.pk,
                "trigger": certificate.trigger,
                "files_by_kind": certificate.destroyed_counts,
                "file_ids": file_ids,
                "stray_files_removed": strays,
                "cancelled_jobs": cancelled,
                "withdrawn_outputs": withdrawn,
                "key_destroyed": certificate.key_destroyed_at is not None,
            },
        )
    return certificate


# --- the retention and expiry sweep ---------------------------------------------------------------------
@dataclass
class SweepReport:
    lines: list[str] = field(default_factory=list)
    erased_subjects: int = 0
    erased_files: int = 0
    resumed: int = 0


def _ended_by_revocation(subject: Subject, at: datetime) -> bool:
    records = _records(subject)
    return bool(records) and all(_revoked_as_of(record, at) is not None for record in records)


def _describe(certificate: DeletionCertificate) -> str:
    key = "key destroyed" if certificate.key_destroyed_at else "key kept"
    return (
        f"subject {certificate.subject_id} (tenant {certificate.tenant_id}): {certificate.trigger}, "
        f"{certificate.files_destroyed} files {dict(certificate.destroyed_counts)}, {key}, "
        f"certificate {certificate.public_id}"
    )


def _open_sweep_erasure(
    subject: Subject, now: datetime, dry_run: bool, say: Callable[[str], None]
) -> DeletionCertificate | None:
    """Under the subject lock: decide what of this subject is due at `now` and open its certificate."""
    assets = subject.assets.all()
    if (
        not SubjectKey.objects.for_tenant(subject.tenant).filter(subject=subject).exists()
        and not assets.exists()
    ):
        return None
    where = f"subject {subject.pk} (tenant {subject.tenant.slug})"
    trigger: ErasureTrigger | None = None
    if not records_in_force(subject, now):
        trigger = ErasureTrigger.REVOCATION if _ended_by_revocation(subject, now) else ErasureTrigger.EXPIRY
    elif subject_retain_until(subject, now) <= now:
        trigger = ErasureTrigger.RETENTION
    if trigger is not None:
        if dry_run:
            say(f"would erase {where}: {trigger.value}, {assets.count()} files, key destroyed")
            return None
        return _begin_erasure(subject, trigger=trigger, actor=None, reason="", enqueue=False)
    due = list(assets.filter(retain_until__lte=now).order_by("id").values_list("pk", flat=True))
    if not due:
        return None
    if dry_run:
        say(f"would erase {len(due)} files of {where} whose own retention ended")
        return None
    certificate = DeletionCertificate.objects.for_tenant(subject.tenant).create(
        subject=subject,
        scope=DeletionCertificate.Scope.ASSETS,
        trigger=ErasureTrigger.RETENTION,
        started_at=timezone.now(),
        planned_asset_ids=due,
    )
    audit(
        tenant=subject.tenant,
        action="erasure.started",
        target=certificate,
        payload={"subject_id": subject.pk, "trigger": "retention", "scope": "assets", "asset_ids": due},
    )
    return certificate


def enforce_retention(
    *, now: datetime | None = None, dry_run: bool = False, echo: Callable[[str], None] = logger.info
) -> SweepReport:
    """Erase everything due at `now`, across tenants (a system sweep: the command and the beat task).

    Order: finish erasures a crash interrupted; then subjects holding data with
    no consent in force (expiry; revocations whose erasure never ran); then data
    past its retain_until. Each subject is decided and erased under its own lock
    and transactions, so a crash anywhere loses nothing and the next run finishes.
    """
    moment = now or timezone.now()
    report = SweepReport()

    def say(line: str) -> None:
        report.lines.append(line)
        echo(line)

    unfinished = DeletionCertificate.dangerously_unscoped.filter(completed_at__isnull=True).order_by("id")
    for certificate_id in list(unfinished.values_list("pk", flat=True)):
        if dry_run:
            say(f"would finish interrupted erasure (certificate #{certificate_id})")
            continue
        done = complete_erasure(certificate_id)
        if done is not None:
            report.resumed += 1
            report.erased_subjects += int(done.scope == DeletionCertificate.Scope.SUBJECT)
            report.erased_files += done.files_destroyed
            say(f"finished interrupted erasure of {_describe(done)}")
    holders = (
        Subject.dangerously_unscoped.filter(Q(data_key__isnull=False) | Q(assets__isnull=False))
        .distinct()
        .order_by("tenant_id", "id")
        .values_list("pk", flat=True)
    )
    for subject_id in list(holders):
        with transaction.atomic():
            subject = (
                Subject.dangerously_unscoped.select_for_update(of=("self",))
                .select_related("tenant", "retention_schedule")
                .get(pk=subject_id)
            )
            certificate = _open_sweep_erasure(subject, moment, dry_run, say)
        if certificate is None:
            continue
        done = complete_erasure(certificate.pk)
        if done is not None:
            report.erased_subjects += int(done.scope == DeletionCertificate.Scope.SUBJECT)
            report.erased_files += done.files_destroyed
            say(f"erased {_describe(done)}")
    say(
        f"{'dry run: ' if dry_run else ''}{report.erased_subjects} subjects erased, "
        f"{report.erased_files} files destroyed, {report.resumed} interrupted erasures finished"
    )
    return report


# --- master-key rotation ----------------------------------------------------------------------------------
@dataclass
class RotationReport:
    lines: list[str] = field(default_factory=list)
    rewrapped: int = 0
    already_current: int = 0
    unopenable: list[str] = field(default_factory=list)  # key ids no configured master key opens


def rotate_master_key(*, dry_run: bool = False, echo: Callable[[str], None] = logger.info) -> RotationReport:
    """Rewrap every subject key still wrapped by a previous master key under the current one.

    A system task across tenants (the rotate_master_key command). Each key is rewrapped under its
    subject's lock in its own transaction with its audit entry, so the run can be stopped and
    rerun at any point. Data keys stay the same, so no stored file changes. A key that no
    configured master key opens is reported and left as it is: the operator is missing the
    previous key that wrapped it and must not retire any key until it is found.
    """
    report = RotationReport()

    def say(line: str) -> None:
        report.lines.append(line)
        echo(line)

    keys = SubjectKey.dangerously_unscoped.order_by("id").values_list("pk", "subject_id")
    for key_pk, subject_pk in list(keys):
        with transaction.atomic():
            subject = (
                Subject.dangerously_unscoped.select_for_update(of=("self",))
                .select_related("tenant")
                .filter(pk=subject_pk)
                .first()
            )
            subject_key = SubjectKey.dangerously_unscoped.filter(pk=key_pk).first()
            if subject is None or subject_key is None:
                continue  # erased since the list was read: nothing left to rewrap
            try:
                wrapped = vault.rewrapped(subject_key)
            except crypto.CryptoError:
                report.unopenable.append(str(subject_key.key_id))
                say(
                    f"key {subject_key.key_id} of subject {subject.pk} (tenant {subject.tenant.slug}) opens "
                    "with none of the configured master keys: left as it is"
                )
                continue
            if wrapped is None:
                report.already_current += 1
                continue
            report.rewrapped += 1
            if dry_run:
                continue
            subject_key.wrapped_key = wrapped
            subject_key.save(update_fields=["wrapped_key"])
            audit(
                tenant=subject.tenant,
                action="consent.key_rewrapped",
                target=subject_key,
                payload={"subject_id": subject.pk, "key_id": str(subject_key.key_id)},
            )
    verb = "dry run: would rewrap" if dry_run else "rewrapped"
    say(
        f"{verb} {report.rewrapped} subject keys under the current master key, "
        f"{report.already_current} already under it, {len(report.unopenable)} opening with no configured key"
    )
    return report
