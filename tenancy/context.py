"""The active tenant of a request: chosen by the user, never guessed.

A user of several tenants chooses one (the chooser page, the switcher); the
choice is kept in the session and remembered on the membership for their next
login. With no choice to go by, a user of several tenants has no active tenant
and the pages send them to the chooser: picking one for them (the first by
name, as before) let whichever tenant had just added them take over their work.
"""

from __future__ import annotations

from typing import Any

from django.db.models import F, QuerySet
from django.http import Http404, HttpRequest

from tenancy import actions
from tenancy.models import Membership, Tenant
from tenancy.permissions import remember_membership
from tenancy.request_facts import remembered

SESSION_KEY = "likeness_active_tenant_id"


class TenantRequest(HttpRequest):
    """An HttpRequest after ActiveTenantMiddleware: for type-checking views."""

    tenant: Tenant | None
    membership: Membership | None


def memberships_of(user: Any) -> list[Membership]:
    """The user's tenants by name (the switcher, the API's choice); read once per request."""
    if user is None or not user.is_authenticated or not user.is_active:
        return []
    return remembered(
        ("memberships", user.pk),
        lambda: list(
            Membership.objects.filter(user_id=user.pk).select_related("tenant").order_by("tenant__name")
        ),
    )


def _default_membership(queryset: QuerySet[Membership]) -> Membership | None:
    """The only membership, else the one the user chose last; None when the user has to choose."""
    candidates = list(queryset.order_by(F("last_selected_at").desc(nulls_last=True), "pk")[:2])
    if len(candidates) == 1:
        return candidates[0]
    if candidates and candidates[0].last_selected_at is not None:
        return candidates[0]
    return None


def resolve_membership(session: Any, user: Any) -> Membership | None:
    """The membership for the session's active tenant, else `_default_membership`.

    A tenant the user no longer belongs to is never returned, even if the
    session still names it.
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    wanted = session.get(SESSION_KEY) if session is not None else None
    queryset = Membership.objects.filter(user_id=user.pk).select_related("tenant")
    membership = queryset.filter(tenant_id=wanted).first() if wanted is not None else None
    if membership is None:
        membership = _default_membership(queryset)
        if session is not None:
            if membership is None:
                session.pop(SESSION_KEY, None)
            else:
                session[SESSION_KEY] = membership.tenant_id
    if membership is not None:
        remember_membership(membership)
    return membership


def activate_tenant(request: HttpRequest, tenant_id: int | str) -> Membership:
    """Switch the request's session to another tenant the user belongs to (404 otherwise), and remember it."""
    if not request.user.is_authenticated:
        raise Http404("Not found.")
    try:
        membership = Membership.objects.select_related("tenant").get(
            user_id=request.user.pk, tenant_id=tenant_id
        )
    except (Membership.DoesNotExist, ValueError):
        raise Http404("Not found.") from None
    actions.remember_tenant_choice(membership)
    remember_membership(membership)
    request.session[SESSION_KEY] = membership.tenant_id
    request.tenant = membership.tenant  # type: ignore[attr-defined]
    request.membership = membership  # type: ignore[attr-defined]
    return membership


def apply_to_request(request: Any) -> None:
    """Set `request.tenant` and `request.membership` (both None for anonymous users and non-members)."""
    membership = resolve_membership(getattr(request, "session", None), getattr(request, "user", None))
    request.membership = membership
    request.tenant = membership.tenant if membership is not None else None


def require_tenant(request: Any) -> Tenant:
    """The active tenant of a request that a member-only guard already let through."""
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        raise Http404("Not found.")
    return tenant
