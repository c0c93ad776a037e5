"""What the consent pages share: the subject lookup inside the tenant, permission tests, failures."""

from __future__ import annotations

from typing import Any

from consent import actions
from consent.intake import PhotoRejectedError
from consent.models import Subject
from consent.status import STATUS_PREFETCH
from tenancy.access import get_for_tenant_or_404
from tenancy.context import TenantRequest, require_tenant
from tenancy.decorators import check_perm
from tenancy.permissions import has_perm

CLOSED_REQUESTS_SHOWN = 50
ActionFailure = (actions.ConsentActionError, actions.ConsentRequiredError, PhotoRejectedError)


def failure_text(error: Exception) -> str:
    return str(getattr(error, "message", error))


def get_subject(request: TenantRequest, pk: int, perm: str = "consent.view_subject") -> Subject:
    subject = get_for_tenant_or_404(
        Subject.objects.select_related("retention_schedule", "enrollment_photo").prefetch_related(
            *STATUS_PREFETCH
        ),
        require_tenant(request),
        pk=pk,
    )
    check_perm(request, perm, subject)
    return subject


def can(request: TenantRequest, perm: str, obj: Any = None) -> bool:
    return has_perm(request.user, require_tenant(request), perm, obj)
