"""The append-only, hash-chained audit log: one chain per tenant.

Append-only is enforced three times: the model refuses save() of an existing
row and delete(); its querysets refuse update()/delete(); on PostgreSQL a
trigger (migration 0002) rejects UPDATE and DELETE on the table for every role.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models

from audit.checkpoints import MAX_SINK_CHARS
from tenancy.models import Tenant, TenantOwnedModel
from tenancy.scoping import TenantScopedManager, TenantScopedQuerySet


class AuditImmutableError(Exception):
    """Someone tried to change or remove an audit entry."""


def _refuse(what: str) -> NoReturn:
    raise AuditImmutableError(f"The audit log is append-only: {what} is not allowed.")


class _AppendOnlyQuerySetMixin:
    def update(self, **kwargs: Any) -> int:
        _refuse("update()")

    def _update(self, values: Any) -> Any:
        _refuse("update")

    def delete(self) -> tuple[int, dict[str, int]]:
        _refuse("delete()")

    def _raw_delete(self, using: Any) -> int:
        _refuse("delete")

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        _refuse("bulk_update()")

    def update_or_create(self, *args: Any, **kwargs: Any) -> Any:
        _refuse("update_or_create()")


class AuditEntryQuerySet(_AppendOnlyQuerySetMixin, TenantScopedQuerySet["AuditEntry"]):
    """Tenant-scoped and append-only."""


class UnscopedAuditEntryQuerySet(_AppendOnlyQuerySetMixin, models.QuerySet["AuditEntry"]):
    """For the verifier's cross-tenant sweeps: still append-only."""


class AuditEntryManager(TenantScopedManager["AuditEntry"]):
    _queryset_class = AuditEntryQuerySet  # type: ignore[assignment]


class AuditEntry(TenantOwnedModel):
    seq = models.PositiveBigIntegerField(help_text="Position in the tenant's chain: 1, 2, 3... without gaps.")
    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The acting user; empty for the system (tasks, sweeps, commands).",
    )
    action = models.CharField(max_length=100, help_text='Dotted name, e.g. "membership.added".')
    target_type = models.CharField(
        max_length=100, blank=True, help_text='Model label, e.g. "consent.subject".'
    )
    target_id = models.CharField(max_length=64, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    subject_ref = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="The subject this entry is about (audit.chain.subject_reference); not a foreign key, "
        "so the entry outlives the subject's erasure.",
    )
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditEntryManager()  # type: ignore[misc]
    dangerously_unscoped = UnscopedAuditEntryQuerySet.as_manager()  # type: ignore[misc]

    class Meta:
        ordering = ["tenant_id", "seq"]
        base_manager_name = "dangerously_unscoped"
        constraints = [models.UniqueConstraint(fields=["tenant", "seq"], name="auditentry_unique_tenant_seq")]
        indexes = [
            models.Index(fields=["tenant", "action"], name="auditentry_tenant_action"),
            models.Index(fields=["tenant", "at"], name="auditentry_tenant_at"),
            models.Index(fields=["tenant", "target_type", "target_id"], name="auditentry_tenant_target"),
            models.Index(fields=["tenant", "actor"], name="auditentry_tenant_actor"),
            models.Index(fields=["tenant", "subject_ref", "seq"], name="auditentry_tenant_subject"),
        ]
        permissions = [("export_auditentry", "Can export the audit log")]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"

    @property
    def actor_label(self) -> str:
        return "system" if self.actor_id is None else str(self.actor)

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding or kwargs.get("force_update") or kwargs.get("update_fields"):
            _refuse("changing a saved entry")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("delete()")


class AuditChainHead(models.Model):
    """The last seq and hash of each tenant's chain, moved forward with every append.

    It lets the verifier notice entries removed from the end of a chain, which
    the chain alone cannot show.
    """

    tenant = models.OneToOneField(Tenant, on_delete=models.PROTECT, primary_key=True, related_name="+")
    last_seq = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"{self.tenant_id}@{self.last_seq}"


class AuditCheckpoint(models.Model):
    """A signed checkpoint of a tenant's chain, queued here until every configured sink has it.

    This table is an outbox, not the evidence: verification reads checkpoints back from the
    sinks outside the database. Someone who controls the database can delete rows here (the
    next checkpoint then names a predecessor the sinks never got, which shows) but cannot make
    one: the signature needs the anchor key, which is not in the database.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    number = models.PositiveIntegerField(help_text="1, 2, 3... per tenant.")
    seq = models.PositiveBigIntegerField(help_text="The chain entry the checkpoint covers up to.")
    head_hash = models.CharField(max_length=64)
    digest = models.CharField(max_length=64, help_text="SHA-256 of the signed body: the next one's previous.")
    line = models.TextField(help_text="The signed line, exactly as written to every sink.")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "number"], name="auditcheckpoint_unique_tenant_number")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}#{self.number}@{self.seq}"


class AuditCheckpointDelivery(models.Model):
    """That a checkpoint reached one sink (named as configured); missing rows are retried."""

    checkpoint = models.ForeignKey(AuditCheckpoint, on_delete=models.CASCADE, related_name="deliveries")
    sink = models.CharField(max_length=MAX_SINK_CHARS)
    delivered_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["checkpoint", "sink"], name="auditcheckpointdelivery_unique")
        ]

    def __str__(self) -> str:
        return f"{self.checkpoint} -> {self.sink}"
