"""The model registry: versions of a subject's identity model, and which one is active.

A version is created only by the training job that made it, in the same
transaction as its artifact's row (training.kind), so a cancelled or failed job
leaves no version and no file. The first usable version of a subject becomes
active by itself (there is nothing to choose between yet, and generation needs
an active version); after that, promoting another is a staff action, audited.
Older versions stay until retention or erasure removes their artifact: the row
stays as history, `artifact` empty and `is_usable` false.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.actions import record as audit
from consent.actions.common import Actor, acting_user, next_version
from consent.locks import locked_subject
from consent.models import Asset
from tenancy.permissions import require_perm
from training.actions.common import TrainingActionError
from training.models import IdentityModel, TrainingJob


def create_identity_model(
    *, job: TrainingJob, artifact: Asset, manifest: dict[str, Any], evaluation: dict[str, Any]
) -> IdentityModel:
    """Record the version a training job made (the job's own transaction; the system is the actor)."""
    tenant = job.tenant
    with transaction.atomic():
        subject = locked_subject(job.subject)
        models = IdentityModel.objects.for_tenant(tenant).filter(subject=subject)
        first_active = not models.filter(is_active=True).exists()
        now = timezone.now()
        model = IdentityModel.objects.for_tenant(tenant).create(
            subject=subject,
            version=next_version(tenant, models),
            job=job,
            method=job.method,
            base_model=job.base_model,
            model_kind=str(manifest.get("model_kind", "")),
            manifest=manifest,
            artifact=artifact,
            evaluation=evaluation,
            is_active=first_active,
            created_at=now,
            activated_at=now if first_active else None,
        )
        audit(
            tenant=tenant,
            action="identity_model.created",
            target=model,
            payload={
                "subject_id": subject.pk,
                "version": model.version,
                "job_id": job.pk,
                "artifact_id": artifact.pk,
                "dataset_hash": manifest.get("dataset_hash"),
                "activated": first_active,
            },
        )
    return model


def activate_identity_model(*, actor: Actor, model: IdentityModel) -> IdentityModel:
    """Make `model` its subject's active version (the one generation and editing use)."""
    tenant = model.tenant
    require_perm(actor, tenant, "training.activate_identitymodel", model)
    with transaction.atomic():
        subject = locked_subject(model.subject)
        locked = IdentityModel.objects.for_tenant(tenant).select_for_update().get(pk=model.pk)
        if not locked.is_usable:
            raise TrainingActionError(
                f"Version {locked.version} can no longer be used: its files were erased (retention or "
                "erasure). Train a new version.",
                code="model_not_usable",
            )
        if locked.is_active:
            return locked
        previous = IdentityModel.objects.for_tenant(tenant).filter(subject=subject, is_active=True).first()
        if previous is not None:
            previous.is_active = False
            previous.save(update_fields=["is_active"])
        locked.is_active = True
        locked.activated_at = timezone.now()
        locked.activated_by = acting_user(actor)
        locked.save(update_fields=["is_active", "activated_at", "activated_by"])
        audit(
            tenant=tenant,
            action="identity_model.activated",
            actor=actor,
            target=locked,
            payload={
                "subject_id": subject.pk,
                "version": locked.version,
                "previous_id": previous.pk if previous is not None else None,
            },
        )
    return locked
