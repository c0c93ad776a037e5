"""The release gate: one check, run when a release is created and again at every download.

An output may leave the platform only while all of these hold at that moment:
- it is approved (not pending review, rejected, vetoed or withdrawn) and its image still exists;
- the subject's consent covers its purpose now (consent.actions.require);
- for an existing release, the consent record it was cleared under is itself still in force (a newer
  record covering the purpose does not revive a clearance given under a revoked one), and today is not
  after its end date.
Every refusal is one error type whose message says what a person can do about it.
"""

from __future__ import annotations

from datetime import date, datetime

from django.utils import timezone

from consent import actions as consent_actions
from consent.actions import ConsentRequiredError
from consent.actions.gate import PURPOSE_PHRASES, in_force, revoked_as_of
from consent.models import ConsentRecord
from editing.models import Output, OutputKind, OutputStatus
from editing.releases.models import Release
from editing.review import PURPOSE_OF_KIND

_STATUS_REFUSALS = {
    OutputStatus.PENDING_REVIEW: "is pending review: approve it first",
    OutputStatus.REJECTED: "was rejected in review",
    OutputStatus.VETOED: "was vetoed by the person it shows",
    OutputStatus.WITHDRAWN: "was withdrawn (the person's data was erased)",
}


class ReleaseRefusedError(Exception):
    """The gate said no; `message` is for the person who asked, `code` for API clients."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def check(
    output: Output,
    *,
    consent_record: ConsentRecord | None = None,
    ends_at: date | None = None,
    at: datetime | None = None,
) -> ConsentRecord:
    """The consent record that covers `output`'s purpose now, or ReleaseRefusedError with the reason.

    `consent_record` and `ends_at` are an existing release's: its own record must still be in force and
    today must not be after its end date. The caller holds the subject's row lock, so a revocation
    being written at the same moment waits for (or is seen by) this check.
    """
    moment = at or timezone.now()
    refusal = _refusal(output, consent_record, ends_at, moment)
    if refusal is not None:
        raise refusal
    try:
        return consent_actions.require(output.subject, PURPOSE_OF_KIND[OutputKind(output.kind)], moment)
    except ConsentRequiredError as error:
        raise ReleaseRefusedError(error.message, f"consent_{error.reason.value}") from None


def standing(release: Release, at: datetime | None = None) -> ReleaseRefusedError | None:
    """Why `release` may not be used now, from its loaded rows alone (lists: no query per row).

    The same verdict as `check` for an existing release: its own consent record granted the purpose
    when it was created, so that record being in force means `require` finds a covering one too.
    Load `output`, `consent_record` and `consent_record__revocation` with the release.
    """
    return _refusal(release.output, release.consent_record, release.ends_at, at or timezone.now())


def _refusal(
    output: Output, consent_record: ConsentRecord | None, ends_at: date | None, moment: datetime
) -> ReleaseRefusedError | None:
    status = OutputStatus(output.status)
    if status != OutputStatus.APPROVED:
        return ReleaseRefusedError(
            f"Output #{output.pk} {_STATUS_REFUSALS[status]}.", f"output_{status.value}"
        )
    if output.image_id is None:
        return ReleaseRefusedError(f"Output #{output.pk}'s image was erased.", "output_withdrawn")
    if consent_record is not None and not in_force(consent_record, moment):
        revoked = revoked_as_of(consent_record, moment) is not None
        purpose = PURPOSE_OF_KIND[OutputKind(output.kind)]
        return ReleaseRefusedError(
            f"The consent this release was cleared under (#{consent_record.pk}) "
            f"{'was revoked' if revoked else 'has ended'}; a new release needs the consent now in force "
            f"for {PURPOSE_PHRASES[purpose]}.",
            "consent_revoked" if revoked else "consent_expired",
        )
    if ends_at is not None and timezone.localdate(moment) > ends_at:
        return ReleaseRefusedError(
            f"This release's clearance ended on {ends_at.isoformat()}; create a new release for further use.",
            "release_expired",
        )
    return None
