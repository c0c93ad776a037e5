"""The Django admin is the operator's read-only window across tenants.

It bypasses tenant scoping (through `dangerously_unscoped`) and would bypass
the actions modules, so it never writes: changes go through the dashboard, the
API or management commands, where they are permission-checked and audited.
It never shows a secret either: the user admin below replaces Django's, which
shows password hashes and offers password and user creation forms, and API
tokens have no admin at all (tests/platform/test_admin.py holds every
registered admin to both rules).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.http import HttpRequest

from tenancy.models import Invitation, Membership, Tenant


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TenantOwnedAdmin(ReadOnlyAdmin):
    """Base for admins of TenantOwnedModel subclasses in every app."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return self.model.dangerously_unscoped.all()


@admin.register(Tenant)
class TenantAdmin(ReadOnlyAdmin):
    list_display = ("name", "slug", "created_at")
    search_fields = ("name", "slug")


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role", "tenant")
    search_fields = ("user__username", "tenant__slug")


@admin.register(Invitation)
class InvitationAdmin(TenantOwnedAdmin):
    list_display = ("tenant", "email", "role", "created_at", "expires_at", "accepted_at", "revoked_at")
    list_filter = ("role", "tenant")
    search_fields = ("email", "tenant__slug")
    exclude = ("token_sha256",)  # opens nothing, but there is no reason to show it


# Roles come from memberships (tenancy.permissions), so Django's groups are not used.
admin.site.unregister(Group)
admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class AccountAdmin(ReadOnlyAdmin):
    """Who has an account and which flags it carries: no password field, hash, or link to change one."""

    fields = (
        "username",
        "email",
        "first_name",
        "last_name",
        "is_active",
        "is_staff",
        "is_superuser",
        "last_login",
        "date_joined",
    )
    list_display = ("username", "email", "is_active", "is_staff", "is_superuser", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser")
    search_fields = ("username", "email")
