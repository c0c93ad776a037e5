"""Subjects and their contact address, consent texts, and the audited export of consent evidence."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from audit.actions import record as audit
from consent.actions.common import Actor, ConsentActionError, acting_user, next_version
from consent.actions.retention import (
    BIPA_DEFAULT_TITLE,
    MAX_YEARS_AFTER_LAST_INTERACTION,
    publish_schedule_version,
    schedule_in_force,
)
from consent.locks import locked_subject
from consent.models import ConsentTemplate, DeletionCertificate, Subject
from consent.tokens import consent_text_sha256
from tenancy.models import Membership, Tenant
from tenancy.permissions import require_perm


def _mailbox(address: str) -> tuple[str, str]:
    """Local part without a +tag, and domain, case-folded: "Ann+x@Brand.test" reaches ann@brand.test."""
    local, _, domain = address.strip().casefold().rpartition("@")
    return local.split("+", 1)[0], domain


def check_contact_address(tenant: Tenant, contact_email: str) -> str:
    """The address, cleaned; refused when it is not one, or when it reaches a member of the tenant.

    Consent links and in-person codes go only to this address, so an address of
    the tenant's own users would let staff route a subject's link to themselves
    and sign in the subject's name.
    """
    email = contact_email.strip()
    if not email:
        return ""
    try:
        validate_email(email)
    except ValidationError:
        raise ConsentActionError(f"{email[:254]!r} is not an email address.") from None
    mailbox = _mailbox(email)
    members = Membership.objects.filter(tenant=tenant).exclude(user__email="")
    if any(_mailbox(address) == mailbox for address in members.values_list("user__email", flat=True)):
        raise ConsentActionError(
            f"{email} reaches a user of {tenant.name}. Consent links go only to the subject's own address, "
            "never to a member of the tenant."
        )
    return email


def create_subject(
    *, actor: Actor, tenant: Tenant, display_name: str, contact_email: str = "", internal_reference: str = ""
) -> Subject:
    """A new subject, linked to the retention schedule in force (the BIPA default is published if none is)."""
    require_perm(actor, tenant, "consent.add_subject")
    name = display_name.strip()
    if not name:
        raise ConsentActionError("Give the subject's name.")
    email = check_contact_address(tenant, contact_email)
    now = timezone.now()
    with transaction.atomic():
        schedule = schedule_in_force(tenant, now) or publish_schedule_version(
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
            created_by=acting_user(actor),
        )
        audit(
            tenant=tenant,
            action="subject.created",
            actor=actor,
            target=subject,
            payload={"retention_schedule_id": schedule.pk, "retention_version": schedule.version},
        )
    return subject


def change_contact_email(*, actor: Actor, subject: Subject, contact_email: str) -> Subject:
    """The address future links and codes go to (links already sent keep theirs); audited, never silent."""
    tenant = subject.tenant
    require_perm(actor, tenant, "consent.change_subject", subject)
    email = check_contact_address(tenant, contact_email)
    with transaction.atomic():
        subject = locked_subject(subject)
        if email == subject.contact_email:
            return subject
        had_address = bool(subject.contact_email)
        subject.contact_email = email
        subject.save(update_fields=["contact_email"])
        audit(
            tenant=tenant,
            action="subject.contact_changed",
            actor=actor,
            target=subject,
            payload={"subject_id": subject.pk, "had_address": had_address, "has_address": bool(email)},
        )
    return subject


def publish_consent_template(*, actor: Actor, tenant: Tenant, name: str, body: str) -> ConsentTemplate:
    """A new immutable version of a consent text, fingerprinted with SHA-256."""
    require_perm(actor, tenant, "consent.add_consenttemplate")
    title, text = name.strip(), body.strip()
    if not title or not text:
        raise ConsentActionError("A consent template needs a name and its text.")
    with transaction.atomic():
        version = next_version(tenant, ConsentTemplate.objects.for_tenant(tenant).filter(name=title))
        template = ConsentTemplate.objects.for_tenant(tenant).create(
            name=title,
            version=version,
            body=text,
            sha256=consent_text_sha256(text),
            created_at=timezone.now(),
            created_by=acting_user(actor),
        )
        audit(
            tenant=tenant,
            action="consent.template_published",
            actor=actor,
            target=template,
            payload={"version": template.version, "sha256": template.sha256},
        )
    return template


# What a subject's exports are called in `consent.exported` entries: the consent history and the ledger.
SUBJECT_EXPORTS = ("subject_history", "subject_ledger")


def record_export(
    *,
    actor: Actor,
    tenant: Tenant,
    what: str,
    file_format: str,
    target: Subject | DeletionCertificate | None = None,
) -> None:
    """An export of consent evidence is itself a fact a reviewer may need: who took what, when."""
    perm = "consent.export_subject" if what in SUBJECT_EXPORTS else "consent.export_deletioncertificate"
    require_perm(actor, tenant, perm, target if isinstance(target, Subject) else None)
    audit(
        tenant=tenant,
        action="consent.exported",
        actor=actor,
        target=target,
        payload={"what": what, "format": file_format},
    )
