"""The dashboard's navigation, filtered per role.

Apps append their entries here (label, URL name, permission needed to see it),
so each user sees exactly the pages their role or grants open to them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    permission: str | None = None  # None: every member of the tenant


NAV_ITEMS: list[NavItem] = [
    NavItem("Overview", "dashboard"),
    NavItem("Members", "members", "tenancy.view_membership"),
    NavItem("Settings", "tenant-settings", "tenancy.change_tenant"),
    NavItem("Audit log", "audit-log", "audit.view_auditentry"),
    NavItem("API", "api-docs"),
]
