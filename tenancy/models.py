"""Tenants (brands), memberships with a role, invitations, users' API tokens, and the base of every
tenant-owned model."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

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


class InvitationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    EXPIRED = "expired", "Expired"
    ACCEPTED = "accepted", "Accepted"
    REVOKED = "revoked", "Revoked"


class Invitation(TenantOwnedModel):
    """A role in a tenant offered to an e-mail address; a membership exists only once it is accepted.

    Tenant admins cannot add an existing account directly: that let any admin pull
    another tenant's user into theirs. The link's token is the capability: it is
    e-mailed to the address and only its SHA-256 is stored, so neither the
    database nor the admin who invited can open it. It is single use, expires,
    and an admin can revoke it or re-send it (which replaces the token).
    """

    email = models.EmailField(
        max_length=254, help_text="The invited address; the accepting account must have it."
    )
    role = models.CharField(max_length=32, choices=Role.choices)
    token_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_sent_at = models.DateTimeField(
        help_text="When the current token was issued (first send or re-send)."
    )
    send_count = models.PositiveSmallIntegerField(default=1)
    emailed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the current token's e-mail was handed to the mail server."
    )
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        permissions = [("revoke_invitation", "Can revoke an invitation")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(accepted_at__isnull=True) | models.Q(revoked_at__isnull=True),
                name="invitation_not_accepted_and_revoked",
            )
        ]

    def __str__(self) -> str:
        return f"Invitation {self.pk} to {self.tenant_id} as {self.role}"

    def status(self, now: datetime | None = None) -> InvitationStatus:
        if self.accepted_at is not None:
            return InvitationStatus.ACCEPTED
        if self.revoked_at is not None:
            return InvitationStatus.REVOKED
        if self.expires_at <= (now or timezone.now()):
            return InvitationStatus.EXPIRED
        return InvitationStatus.PENDING


class ApiToken(models.Model):
    """A named, expiring, revocable API key of one user; only a hash of the key is stored.

    The key (`lk_<prefix>_<secret>`) is shown once, when it is created. The prefix
    is public and lets its owner tell tokens apart; the hash is SHA-256 of the
    whole key. A fast hash suffices because the secret is 256 random bits, not a
    password someone chose: nothing guessable is left for a slow hash to protect,
    and each API request would pay for one.
    """

    class EndReason(models.TextChoices):
        REVOKED = "revoked", "Revoked"
        PASSWORD_CHANGED = "password_changed", "Password changed"
        OPERATOR = "operator", "Revoked by the operator"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=32, choices=EndReason.choices, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["user", "revoked_at", "expires_at"], name="apitoken_user_active")]

    def __str__(self) -> str:
        return f"{self.name} (lk_{self.prefix}_…)"

    @classmethod
    def owned_by(cls, user: Any) -> models.QuerySet[ApiToken]:
        """A user's own tokens: the only ones any page or endpoint lists, shows or revokes."""
        return cls.objects.filter(user_id=user.pk)

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now
