"""Master-key rotation: rewrap every subject key under the current master key."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction

from audit.actions import record as audit
from consent import crypto, vault
from consent.models import Subject, SubjectKey

logger = logging.getLogger(__name__)


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
