"""Tenants (brands), memberships with a role, and the base of every tenant-owned model."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tenancy.scoping import TenantScopedManager


class Tenant(models.Model):
    """A brand: the data controller for its subjects, and the unit of isolation."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    settings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    ADMIN = "admin", "Tenant admin"
    STAFF = "staff", "Brand staff"
    LEGAL_REVIEWER = "legal_reviewer", "Legal reviewer"


class Membership(models.Model):
    """A user's role in one tenant; a user may belong to several tenants.

    Not a TenantOwnedModel: the tenant switcher must list a user's memberships
    across tenants, so lookups go through the user (or `get_for_tenant_or_404`).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=32, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    last_selected_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the user last chose this tenant; the latest choice opens on their next login.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")
        ]
        ordering = ["tenant__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} as {self.get_role_display()}"


class TenantOwnedModel(models.Model):
    """Base of every row that belongs to one tenant.

    `objects` is fail-closed (see tenancy.scoping); `dangerously_unscoped` is the
    greppable escape hatch for admin, migrations and system sweeps.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")

    # Declared first, so it is the default manager: related managers derive from it.
    # Django's internal lookups of already-loaded rows (save, refresh, cascades)
    # use the plain base manager and are unaffected.
    objects = TenantScopedManager()
    dangerously_unscoped = models.Manager()  # noqa: DJ012 (a manager, not a field)

    class Meta:
        abstract = True
