"""Puts the active tenant, the user's tenants (for the switcher) and the role-filtered navigation
into every template."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from tenancy.context import memberships_of
from tenancy.models import Role
from tenancy.navigation import NAV_ITEMS
from tenancy.permissions import role_has_perm


def tenancy(request: HttpRequest) -> dict[str, Any]:
    membership = getattr(request, "membership", None)
    if membership is None:
        return {"active_tenant": None, "active_membership": None, "user_memberships": [], "nav_items": []}
    nav = []
    for item in NAV_ITEMS:
        if item.permission is not None and not role_has_perm(Role(membership.role), item.permission):
            continue
        url = reverse(item.url_name)
        nav.append({"label": item.label, "url": url, "active": request.path == url})
    return {
        "active_tenant": membership.tenant,
        "active_membership": membership,
        "user_memberships": memberships_of(request.user),
        "nav_items": nav,
    }
