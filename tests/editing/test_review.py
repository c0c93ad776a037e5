"""The review of outputs (editing.review): staff approve or reject once, the subject vetoes; audited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied

from audit.models import AuditEntry
from consent.models import ConsentLink, ConsentRecord, Purpose, Subject
from editing import review
from editing.models import Output, OutputKind
from tests.editing.isolation_factories import make_output, output_for, status_now

pytestmark = pytest.mark.django_db


def _statuses(*outputs: Output) -> list[str]:
    return [status_now(output) for output in outputs]


def test_staff_approve_and_reject_once_each_audited_with_actor_reason_and_ids(
    record: ConsentRecord, staff: Any
) -> None:
    tenant = record.tenant
    kept, dropped = output_for(record), output_for(record, OutputKind.EDIT)

    approved = review.approve_outputs(actor=staff, tenant=tenant, output_ids=[kept.pk])
    rejected = review.reject_outputs(
        actor=staff, tenant=tenant, output_ids=[dropped.pk], reason="  The left eye is smeared.  "
    )

    assert approved == [review.Decision(kept.pk, status="approved")]
    assert rejected == [review.Decision(dropped.pk, status="rejected")]
    kept.refresh_from_db()
    dropped.refresh_from_db()
    assert (kept.status, kept.decided_by, kept.decision_reason) == ("approved", staff, "")
    assert (dropped.status, dropped.decided_by, dropped.decision_reason) == (
        "rejected",
        staff,
        "The left eye is smeared.",
    )
    assert kept.decided_at is not None and kept.status_changed_at == kept.decided_at
    entries = AuditEntry.objects.for_tenant(tenant)
    approval = entries.get(action="outputs.approved")
    rejection = entries.get(action="outputs.rejected")
    # Each names its subject, so the decision is in the subject's ledger (consent.ledger).
    subject_id = record.subject_id
    assert (approval.actor, approval.payload, approval.subject_ref) == (
        staff,
        {"output_ids": [kept.pk], "reason": "", "subject_id": subject_id},
        subject_id,
    )
    assert (rejection.actor, rejection.payload) == (
        staff,
        {"output_ids": [dropped.pk], "reason": "The left eye is smeared.", "subject_id": subject_id},
    )

    # Decided is final: neither can be decided again, either way.
    again = review.reject_outputs(actor=staff, tenant=tenant, output_ids=[kept.pk], reason="changed my mind")
    assert again[0].code == "not_pending" and "approved" in again[0].error
    assert (
        review.approve_outputs(actor=staff, tenant=tenant, output_ids=[dropped.pk])[0].code == "not_pending"
    )
    assert _statuses(kept, dropped) == ["approved", "rejected"]


def test_a_rejection_needs_a_bounded_reason_and_changes_nothing_without_one(
    record: ConsentRecord, staff: Any
) -> None:
    output = output_for(record)
    for reason, code in (
        ("   ", "reason_required"),
        ("x" * (review.MAX_REASON_CHARS + 1), "reason_too_long"),
    ):
        with pytest.raises(review.ReviewError) as refused:
            review.reject_outputs(actor=staff, tenant=record.tenant, output_ids=[output.pk], reason=reason)
        assert refused.value.code == code
    assert _statuses(output) == ["pending_review"]
    assert not AuditEntry.objects.for_tenant(record.tenant).filter(action="outputs.rejected").exists()


def test_a_bulk_decision_answers_per_id_and_decides_only_what_it_may(
    record: ConsentRecord,
    staff: Any,
    make_subject: Callable[..., Subject],
    sign: Callable[..., ConsentRecord],
    tenant_factory: Callable[..., Any],
) -> None:
    tenant = record.tenant
    first, second, decided_before = output_for(record), output_for(record), output_for(record)
    review.reject_outputs(actor=staff, tenant=tenant, output_ids=[decided_before.pk], reason="blurred")
    # A subject who consented to training and editing but not to new images: their generation is refused.
    limited = sign(make_subject("Limited Example"), [Purpose.TRAIN_IDENTITY, Purpose.EDIT_PHOTOS])
    not_covered = output_for(limited)
    foreign = make_output(tenant_factory())

    decisions = review.approve_outputs(
        actor=staff,
        tenant=tenant,
        output_ids=[first.pk, decided_before.pk, not_covered.pk, foreign.pk, second.pk, first.pk],
        reason="Campaign shortlist",
    )

    assert [(d.output_id, d.status, d.code) for d in decisions] == [
        (first.pk, "approved", ""),
        (decided_before.pk, "", "not_pending"),
        (not_covered.pk, "", "consent_missing"),
        (foreign.pk, "", "not_found"),
        (second.pk, "approved", ""),
    ]
    assert decisions[2].error == "Limited Example has not consented to generating new images."
    assert _statuses(first, second, decided_before, not_covered, foreign) == [
        "approved",
        "approved",
        "rejected",
        "pending_review",
        "pending_review",
    ]
    entry = AuditEntry.objects.for_tenant(tenant).get(action="outputs.approved")
    assert entry.payload == {
        "output_ids": [first.pk, second.pk],
        "reason": "Campaign shortlist",
        "subject_id": record.subject_id,
    }
    assert not AuditEntry.objects.for_tenant(foreign.tenant).filter(action="outputs.approved").exists()


def test_a_bulk_decision_over_several_subjects_is_one_entry_per_subject(
    record: ConsentRecord,
    staff: Any,
    make_subject: Callable[..., Subject],
    sign: Callable[..., ConsentRecord],
) -> None:
    """A subject's ledger lists the decisions about their images, and nobody else's."""
    tenant = record.tenant
    other = sign(make_subject("Other Example"))
    mine, theirs, mine_too = output_for(record), output_for(other), output_for(record)
    review.approve_outputs(actor=staff, tenant=tenant, output_ids=[mine.pk, theirs.pk, mine_too.pk])
    entries = AuditEntry.objects.for_tenant(tenant).filter(action="outputs.approved").order_by("seq")
    assert [(entry.subject_ref, entry.payload["output_ids"]) for entry in entries] == [
        (record.subject_id, [mine.pk, mine_too.pk]),
        (other.subject_id, [theirs.pk]),
    ]


def test_an_approval_needs_the_consent_for_the_outputs_own_purpose(
    make_subject: Callable[..., Subject], sign: Callable[..., ConsentRecord], staff: Any
) -> None:
    record = sign(make_subject("Edit Only"), [Purpose.EDIT_PHOTOS])
    edit, generation = output_for(record, OutputKind.EDIT), output_for(record, OutputKind.GENERATION)

    decisions = review.approve_outputs(actor=staff, tenant=record.tenant, output_ids=[edit.pk, generation.pk])

    assert [d.code for d in decisions] == ["", "consent_missing"]
    assert _statuses(edit, generation) == ["approved", "pending_review"]


def test_bulk_lists_are_bounded(record: ConsentRecord, staff: Any) -> None:
    for ids, code in (([], "no_outputs"), (range(1, review.MAX_BULK_OUTPUTS + 2), "too_many_outputs")):
        with pytest.raises(review.ReviewError) as refused:
            review.approve_outputs(actor=staff, tenant=record.tenant, output_ids=list(ids))
        assert refused.value.code == code


def test_legal_reviewers_read_decisions_but_never_make_them(record: ConsentRecord, legal: Any) -> None:
    output = output_for(record)
    with pytest.raises(PermissionDenied):
        review.approve_outputs(actor=legal, tenant=record.tenant, output_ids=[output.pk])
    with pytest.raises(PermissionDenied):
        review.reject_outputs(actor=legal, tenant=record.tenant, output_ids=[output.pk], reason="no")
    assert _statuses(output) == ["pending_review"]


def test_the_subject_vetoes_their_pending_or_approved_images_even_after_approval(
    record: ConsentRecord,
    staff: Any,
    make_subject: Callable[..., Subject],
    sign: Callable[..., ConsentRecord],
) -> None:
    tenant = record.tenant
    link = ConsentLink.objects.for_tenant(tenant).get(record=record)
    approved, pending, rejected = output_for(record), output_for(record), output_for(record)
    review.approve_outputs(actor=staff, tenant=tenant, output_ids=[approved.pk])
    review.reject_outputs(actor=staff, tenant=tenant, output_ids=[rejected.pk], reason="off brand")
    someone_else = output_for(sign(make_subject("Someone Else")))

    vetoed = review.veto_output(link=link, output_id=approved.pk, reason="I do not like my smile here.")
    review.veto_output(link=link, output_id=pending.pk)
    review.veto_output(link=link, output_id=pending.pk)  # a second tap changes nothing

    assert (vetoed.status, vetoed.veto_reason) == ("vetoed", "I do not like my smile here.")
    assert vetoed.vetoed_at is not None
    with pytest.raises(review.ReviewError) as not_theirs:
        review.veto_output(link=link, output_id=someone_else.pk)
    assert not_theirs.value.code == "not_found"
    with pytest.raises(review.ReviewError) as already_out:
        review.veto_output(link=link, output_id=rejected.pk)
    assert already_out.value.code == "not_vetoable"
    assert _statuses(approved, pending, rejected, someone_else) == [
        "vetoed",
        "vetoed",
        "rejected",
        "pending_review",
    ]
    # A veto is final: staff cannot approve it back.
    assert (
        review.approve_outputs(actor=staff, tenant=tenant, output_ids=[pending.pk])[0].code == "not_pending"
    )

    entries = AuditEntry.objects.for_tenant(tenant).filter(action="outputs.vetoed").order_by("seq")
    assert [(entry.actor, entry.payload) for entry in entries] == [
        (
            None,
            {
                "output_ids": [approved.pk],
                "subject_id": record.subject_id,
                "by": "subject_via_link",
                "link_id": link.pk,
                "reason": "I do not like my smile here.",
            },
        ),
        (
            None,
            {
                "output_ids": [pending.pk],
                "subject_id": record.subject_id,
                "by": "subject_via_link",
                "link_id": link.pk,
                "reason": "",
            },
        ),
    ]
    assert list(review.portal_outputs(link)) == []
