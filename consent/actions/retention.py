"""Retention schedules and the clocks that decide each file's retain_until (BIPA, Texas CUBI)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from audit.actions import record as audit
from consent.actions.common import Actor, ConsentActionError, acting_user, next_version
from consent.actions.gate import revoked_as_of, subject_records
from consent.locks import locked_subject
from consent.models import ConsentRecord, RetentionSchedule, Subject
from consent.tokens import consent_text_sha256
from tenancy.models import Tenant
from tenancy.permissions import require_perm

BIPA_DEFAULT_TITLE = "Default schedule (Illinois BIPA)"
MAX_YEARS_AFTER_LAST_INTERACTION = 3


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


def publish_schedule_version(
    *, tenant: Tenant, actor: Actor, title: str, years: int, days_after_purpose: int, at: datetime
) -> RetentionSchedule:
    version = next_version(tenant, RetentionSchedule.objects.for_tenant(tenant))
    statement = retention_statement(tenant.name, years, days_after_purpose)
    schedule = RetentionSchedule.objects.for_tenant(tenant).create(
        version=version,
        title=title,
        years_after_last_interaction=years,
        days_after_purpose_satisfied=days_after_purpose,
        statement=statement,
        sha256=consent_text_sha256(statement),
        published_at=at,
        published_by=acting_user(actor),
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
        return publish_schedule_version(
            tenant=tenant,
            actor=actor,
            title=title.strip(),
            years=years_after_last_interaction,
            days_after_purpose=days_after_purpose_satisfied,
            at=timezone.now(),
        )


def _add_years(value: datetime, years: int) -> datetime:
    try:
        return value.replace(year=value.year + years)
    except ValueError:  # 29 February
        return value.replace(year=value.year + years, day=28)


def subject_retain_until(
    subject: Subject, at: datetime | None = None, records: list[ConsentRecord] | None = None
) -> datetime:
    """The latest moment the subject's data may be kept, as known at `at`: schedule clocks and consent end.

    `records`: the subject's records (subject_records) when the caller has read them already.
    """
    moment = at or timezone.now()
    schedule = subject.retention_schedule
    candidates = [_add_years(subject.last_interaction_at, schedule.years_after_last_interaction)]
    if subject.purpose_satisfied_at is not None:
        candidates.append(
            subject.purpose_satisfied_at + timedelta(days=schedule.days_after_purpose_satisfied)
        )
    ends = [
        record.expires_at
        for record in (subject_records(subject) if records is None else records)
        if revoked_as_of(record, moment) is None and (record.expires_at is None or record.expires_at > moment)
    ]
    if ends and None not in ends:
        candidates.append(max(end for end in ends if end is not None))
    return min(candidates)


def asset_retain_until(
    subject_until: datetime, asset_created_at: datetime, retain_for_days: int | None
) -> datetime:
    if retain_for_days is None:
        return subject_until
    return min(subject_until, asset_created_at + timedelta(days=retain_for_days))


def refresh_retention(subject: Subject) -> None:
    until = subject_retain_until(subject)
    subject.assets.filter(retain_for_days__isnull=True).update(retain_until=until)
    for asset in subject.assets.filter(retain_for_days__isnull=False):
        asset.retain_until = asset_retain_until(until, asset.created_at, asset.retain_for_days)
        asset.save(update_fields=["retain_until"])


def touch_subject(subject: Subject, at: datetime | None = None) -> None:
    """Record an interaction of the subject (BIPA's clock restarts); other apps call it too."""
    moment = at or timezone.now()
    with transaction.atomic():
        locked = locked_subject(subject)
        if moment > locked.last_interaction_at:
            locked.last_interaction_at = moment
            locked.save(update_fields=["last_interaction_at"])
        refresh_retention(locked)
    subject.last_interaction_at = locked.last_interaction_at


def start_purpose_clock(locked: Subject, *, actor: Actor, at: datetime) -> None:
    """Under the subject lock: the campaign is over from `at` (BIPA: erase now; Texas: within a year).

    Who may start it, and when staff need an admin's confirmation first, is
    consent.actions.erasure_requests.mark_purpose_satisfied's decision.
    """
    locked.purpose_satisfied_at = at
    locked.save(update_fields=["purpose_satisfied_at"])
    refresh_retention(locked)
    audit(tenant=locked.tenant, action="subject.purpose_satisfied", actor=actor, target=locked)
