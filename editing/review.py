"""The review of outputs: staff approve or reject, the subject vetoes (the only writes of an output's status
besides erasure's withdrawal, editing.actions.withdraw_outputs).

Every output starts `pending_review`. Staff decide it once: approve (the consent
must still cover the output's purpose at that moment, or the approval is refused
with the consent's reason) or reject (with a reason). The subject may veto a
pending or approved output from their portal (consent.views.public) at any time:
the brand sees it `vetoed` at once, and nothing decides it again. Decisions are
taken under the subject's row lock (consent.locks: subject before tenant), so an
approval cannot slip past a revocation being written at the same moment.

A bulk decision answers per id: the outputs that could be decided are, the
others say why not; one audit entry names the actor, the reason and the ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit.actions import record as audit
from consent import actions as consent_actions
from consent.actions import Actor, ConsentRequiredError
from consent.actions.common import acting_user
from consent.models import ConsentLink, Purpose, Subject
from editing.models import Output, OutputKind, OutputStatus
from tenancy.models import Tenant
from tenancy.permissions import require_perm

MAX_REASON_CHARS = 500
# One decision covers at most a page of the queue and then some; a longer list is a mistake, not a workflow.
MAX_BULK_OUTPUTS = 100
# What the consent must cover for an output to be used: the purpose its job ran under.
PURPOSE_OF_KIND = {OutputKind.GENERATION: Purpose.GENERATE_IMAGES, OutputKind.EDIT: Purpose.EDIT_PHOTOS}
# What the subject sees on their portal and may veto: nothing rejected, withdrawn or vetoed already.
VETOABLE = (OutputStatus.PENDING_REVIEW, OutputStatus.APPROVED)


class ReviewError(Exception):
    """A decision that cannot be made as asked; `message` is for the person who asked, `code` for clients."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Decision:
    """The answer for one output id of a (bulk) decision: its new status, or why it was not decided."""

    output_id: int
    status: str = ""
    error: str = ""
    code: str = ""

    @property
    def decided(self) -> bool:
        return not self.error


def clean_reason(reason: str, *, required: bool) -> str:
    reason = (reason or "").strip()
    if required and not reason:
        raise ReviewError(
            "Say why the output is rejected: the reason is kept with the decision.", "reason_required"
        )
    if len(reason) > MAX_REASON_CHARS:
        raise ReviewError(
            f"The reason is {len(reason)} characters long; keep it to {MAX_REASON_CHARS}.", "reason_too_long"
        )
    return reason


def _clean_ids(output_ids: Iterable[int]) -> list[int]:
    ids = list(dict.fromkeys(int(pk) for pk in output_ids))
    if not ids:
        raise ReviewError("Choose at least one output.", "no_outputs")
    if len(ids) > MAX_BULK_OUTPUTS:
        raise ReviewError(
            f"{len(ids)} outputs at once is too many: decide at most {MAX_BULK_OUTPUTS} at a time.",
            "too_many_outputs",
        )
    return ids


def _lock_subjects(tenant: Tenant, subject_ids: Iterable[int]) -> dict[int, Subject]:
    """The subjects' row locks, in id order (two bulk decisions never wait for each other in a circle)."""
    subjects = Subject.objects.for_tenant(tenant).select_for_update().filter(pk__in=set(subject_ids))
    return {subject.pk: subject for subject in subjects.order_by("pk")}


def _decide(
    *, actor: Actor, tenant: Tenant, output_ids: Sequence[int], to: OutputStatus, reason: str
) -> list[Decision]:
    require_perm(actor, tenant, "editing.review_output")
    reason = clean_reason(reason, required=to == OutputStatus.REJECTED)
    ids = _clean_ids(output_ids)
    decisions: list[Decision] = []
    with transaction.atomic():
        outputs = Output.objects.for_tenant(tenant)
        subjects = _lock_subjects(tenant, outputs.filter(pk__in=ids).values_list("subject_id", flat=True))
        found = {output.pk: output for output in outputs.select_for_update().filter(pk__in=ids)}
        now = timezone.now()
        refusals: dict[tuple[int, str], ConsentRequiredError | None] = {}
        for pk in ids:
            output = found.get(pk)
            if output is None:
                decisions.append(Decision(pk, error=f"No output #{pk} in this tenant.", code="not_found"))
                continue
            if output.status != OutputStatus.PENDING_REVIEW:
                decisions.append(
                    Decision(
                        pk,
                        error=f"Output #{pk} is {output.get_status_display().lower()}: only outputs pending "
                        "review can be decided.",
                        code="not_pending",
                    )
                )
                continue
            if to == OutputStatus.APPROVED:
                key = (output.subject_id, output.kind)
                if key not in refusals:
                    refusals[key] = _consent_refusal(subjects[output.subject_id], output.kind)
                refusal = refusals[key]
                if refusal is not None:
                    decisions.append(
                        Decision(pk, error=refusal.message, code=f"consent_{refusal.reason.value}")
                    )
                    continue
            decisions.append(Decision(pk, status=to.value))
        decided = [decision.output_id for decision in decisions if decision.decided]
        if decided:
            outputs.filter(pk__in=decided).update(
                status=to,
                status_changed_at=now,
                decided_by=acting_user(actor),
                decided_at=now,
                decision_reason=reason,
            )
            # One entry per subject, in the order their outputs were asked for: each subject's ledger
            # holds the decisions about their images and nobody else's.
            by_subject: dict[int, list[int]] = {}
            for pk in decided:
                by_subject.setdefault(found[pk].subject_id, []).append(pk)
            for subject_id, subject_outputs in by_subject.items():
                audit(
                    tenant=tenant,
                    action=f"outputs.{to.value}",
                    actor=actor,
                    payload={"output_ids": subject_outputs, "reason": reason, "subject_id": subject_id},
                )
    return decisions


def _consent_refusal(subject: Subject, kind: str) -> ConsentRequiredError | None:
    try:
        consent_actions.require(subject, PURPOSE_OF_KIND[OutputKind(kind)])
    except ConsentRequiredError as error:
        return error
    return None


def approve_outputs(
    *, actor: Actor, tenant: Tenant, output_ids: Sequence[int], reason: str = ""
) -> list[Decision]:
    """Approve pending outputs whose subject's consent still covers their purpose; per id, what happened."""
    return _decide(actor=actor, tenant=tenant, output_ids=output_ids, to=OutputStatus.APPROVED, reason=reason)


def reject_outputs(*, actor: Actor, tenant: Tenant, output_ids: Sequence[int], reason: str) -> list[Decision]:
    """Reject pending outputs, with the reason (required); per id, what happened."""
    return _decide(actor=actor, tenant=tenant, output_ids=output_ids, to=OutputStatus.REJECTED, reason=reason)


def portal_outputs(link: ConsentLink) -> QuerySet[Output]:
    """What the link's subject sees of themselves on their portal: their own images that may still be used
    (pending or approved), newest first. The one rule the page and its image route share."""
    return (
        Output.objects.for_tenant(link.tenant)
        .filter(subject_id=link.subject_id, status__in=VETOABLE, image__isnull=False)
        .order_by("-created_at", "-id")
    )


def veto_output(*, link: ConsentLink, output_id: int, reason: str = "") -> Output:
    """The subject withdraws one image of themselves from their portal (no account: the link is the proof).

    Only the link's own subject's outputs are found (another subject's id is as missing as an unknown one);
    a pending or approved one becomes `vetoed` for good, the reason (optional) kept, the veto audited with
    the subject, through the link, as the actor. Vetoing a vetoed output again changes nothing.
    """
    reason = clean_reason(reason, required=False)
    tenant = link.tenant
    with transaction.atomic():
        _lock_subjects(tenant, [link.subject_id])
        output = (
            Output.objects.for_tenant(tenant)
            .select_for_update()
            .filter(subject_id=link.subject_id, pk=output_id)
            .first()
        )
        if output is None:
            raise ReviewError("There is no such image of you.", "not_found")
        if output.status == OutputStatus.VETOED:
            return output
        if output.status not in VETOABLE:
            raise ReviewError(
                f"This image is {output.get_status_display().lower()} already: nobody can use it.",
                "not_vetoable",
            )
        now = timezone.now()
        output.status = OutputStatus.VETOED
        output.status_changed_at = now
        output.vetoed_at = now
        output.veto_reason = reason
        output.save(update_fields=["status", "status_changed_at", "vetoed_at", "veto_reason"])
        audit(
            tenant=tenant,
            action="outputs.vetoed",
            target=output,
            payload={
                "output_ids": [output.pk],
                "subject_id": link.subject_id,
                "by": "subject_via_link",
                "link_id": link.pk,
                "reason": reason,
            },
        )
    return output
