"""Row locks of the consent app, in the one order every writer takes them.

Lock order: subject before tenant. Consent, storage and erasure of one subject
run one at a time under the subject's row lock; the tenant row is locked last,
by audit.actions.record (every audited write appends to the tenant's chain under
that lock) and by versioned publishing (consent texts, retention schedules). A
writer that holds the tenant row never asks for a subject row afterwards, so no
two writers can wait for each other. The whole order is: consent link (its
deliveries and in-person handovers), subject, in-person handover, tenant; no
writer asks for a row earlier in that order than one it holds.
"""

from __future__ import annotations

from consent.models import ConsentLink, InPersonHandover, Subject
from tenancy.models import Tenant


def locked_subject(subject: Subject, tenant: Tenant | None = None) -> Subject:
    """Re-read the subject under a row lock: consent, storage and erasure of one subject run one at a time.

    `tenant`: the subject's tenant when the caller holds it already, so that it is not read again.
    """
    if tenant is None:
        tenant = subject.tenant
    elif tenant.pk != subject.tenant_id:
        raise ValueError(f"Subject {subject.pk} is not a subject of tenant {tenant.pk}.")
    return Subject.objects.for_tenant(tenant).select_for_update().get(pk=subject.pk)


def lock_tenant_row(tenant: Tenant) -> None:
    """Take the tenant row lock (last, see the lock order above) without loading the row."""
    Tenant.objects.select_for_update().filter(pk=tenant.pk).values_list("pk", flat=True).get()


def locked_link(link: ConsentLink) -> ConsentLink:
    """The link under a row lock: its deliveries and in-person handovers are decided one at a time."""
    return (
        ConsentLink.objects.for_tenant(link.tenant)
        .select_for_update(of=("self",))
        .select_related("tenant", "subject")
        .get(pk=link.pk)
    )


def locked_handover(handover: InPersonHandover) -> InPersonHandover:
    """The handover under a row lock: wrong codes are counted exactly, a code verifies once."""
    return (
        InPersonHandover.objects.for_tenant(handover.tenant)
        .select_for_update(of=("self",))
        .select_related("tenant", "link__tenant", "link__subject", "link__template")
        .get(pk=handover.pk)
    )
