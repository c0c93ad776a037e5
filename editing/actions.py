"""The editing app's write path: queue generation and edit jobs, and withdraw outputs on erasure.

Each queueing action checks the actor's permission, refuses parameters the job
could not run with (editing.parameters), and hands the row to the job base
(training.jobs.queue_job: the consent gate for its purpose, the audit entry, the
fair queue). An edit's new photo and painted mask are hostile uploads: checked
by consent.intake, stored only after the consent for editing is confirmed, and
removed again if queueing fails after all.
"""

from __future__ import annotations

import io
import secrets

from django.db import transaction
from django.utils import timezone
from PIL import Image

from audit.actions import record as audit
from consent import actions as consent_actions
from consent import intake, vault
from consent.actions import Actor, UploadedPhoto
from consent.models import Asset, AssetKind, Purpose, Subject
from consent.storage import files_removed_on_rollback
from editing import parameters
from editing.models import EditJob, GenerationJob, MaskMode, Output, OutputStatus
from personalization.presets import MAX_SEED
from tenancy.permissions import require_perm
from training.jobs import JobError, queue_job
from training.models import IdentityModel

# The photos an edit may start from: the subject's own, as the intake admitted them.
EDITABLE_PHOTO_KINDS = (AssetKind.ENROLLMENT_PHOTO, AssetKind.REFERENCE_PHOTO, AssetKind.SOURCE_PHOTO)


def _usable(identity_model: IdentityModel) -> IdentityModel:
    if not identity_model.is_usable:
        raise JobError(
            f"Version {identity_model.version} of {identity_model.subject.display_name}'s model was erased "
            "with their data; choose another version.",
            code="model_erased",
        )
    return identity_model


def queue_generation(
    *,
    actor: Actor,
    identity_model: IdentityModel,
    prompt: str = "",
    prompt_preset: str = "",
    style: bool = False,
    negative_prompt: str = "",
    preset: str = parameters.DEFAULT_PRESET,
    count: int | None = None,
    seed: int | None = None,
    width: int | None = None,
    height: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    scheduler: str | None = None,
) -> GenerationJob:
    """Queue images of the model's subject: the core's `preset` (quick, standard, max) with the values
    given over it. Without a seed one is drawn and kept: the same request with it makes the same images."""
    require_perm(actor, identity_model.tenant, "editing.add_generationjob")
    model = _usable(identity_model)
    manifest = model.manifest
    template = parameters.generation_prompt(
        manifest, prompt=prompt, prompt_preset=prompt_preset, style=style, negative_prompt=negative_prompt
    )
    values = parameters.generation_settings(
        manifest,
        model_kind="sdxl" if model.model_kind == "sdxl" else "sd15",
        preset=preset,
        count=count,
        seed=secrets.randbelow(MAX_SEED + 1) if seed is None else seed,
        width=width,
        height=height,
        steps=steps,
        guidance=guidance,
        scheduler=scheduler,
    )
    job = GenerationJob(
        tenant=model.tenant,
        subject=model.subject,
        kind="generation",
        identity_model=model,
        prompt=template,
        prompt_preset=prompt_preset,
        style=style,
        negative_prompt=negative_prompt,
        preset=preset,
        **values,
    )
    with transaction.atomic():
        queue_job(actor=actor, job=job, add_permission="editing.add_generationjob")
    return job


def _photo_of(subject: Subject, photo: Asset, actor: Actor) -> tuple[int, int]:
    """The size of a stored photo the edit may start from; refused unless it is one of the subject's."""
    if photo.tenant_id != subject.tenant_id or photo.subject_id != subject.pk:
        raise JobError(
            f"That photo is not of {subject.display_name}: an edit works on a photo of the model's own "
            "subject.",
            code="wrong_subject",
        )
    if photo.kind not in EDITABLE_PHOTO_KINDS:
        raise JobError(
            f"That file is a {photo.get_kind_display().lower()}, not a photo: choose the enrollment photo, a "
            "reference photo or upload one.",
            code="not_a_photo",
        )
    require_perm(actor, subject.tenant, "consent.view_asset", photo)
    try:
        with Image.open(io.BytesIO(vault.read_asset(photo))) as image:
            return image.size
    except vault.KeyDestroyedError:
        raise JobError("That photo was erased.", code="photo_erased") from None


def _intake_photo(subject: Subject, upload: UploadedPhoto) -> intake.CleanPhoto:
    limits = consent_actions.intake_limits()
    name = getattr(upload, "name", None) or ""
    try:
        return intake.check_photo(
            intake.read_capped(upload, limits.max_bytes),
            name,
            limits,
            enrollment_embedding=consent_actions.enrollment_embedding(subject),
        )
    except intake.PhotoRejectedError as rejection:
        raise JobError(rejection.message, code=rejection.code.value) from None
    except consent_actions.ConsentActionError as error:
        raise JobError(error.message, code="no_enrollment_photo") from None


def _intake_mask(upload: UploadedPhoto, photo_size: tuple[int, int]) -> intake.CleanMask:
    limits = consent_actions.intake_limits()
    name = getattr(upload, "name", None) or ""
    try:
        return intake.check_mask(
            intake.read_capped(upload, limits.max_bytes), name, limits, photo_size=photo_size
        )
    except intake.PhotoRejectedError as rejection:
        raise JobError(rejection.message, code=rejection.code.value) from None


def queue_edit(
    *,
    actor: Actor,
    identity_model: IdentityModel,
    source_photo: Asset | None = None,
    source_upload: UploadedPhoto | None = None,
    mask_upload: UploadedPhoto | None = None,
    mask_mode: str = MaskMode.CONSTRAIN,
    preset: str = "",
    source_prompt: str = "",
    target_prompt: str = "",
    negative_prompt: str = "",
    steps: int = parameters.DEFAULT_EDIT_STEPS,
    guidance: float = parameters.DEFAULT_EDIT_GUIDANCE,
) -> EditJob:
    """Queue an edit of one photo of the model's subject: a stored one, or a new upload (then kept as a
    `source_photo` file of the subject); with an optional painted mask (white: may change)."""
    tenant = identity_model.tenant
    require_perm(actor, tenant, "editing.add_editjob")
    model = _usable(identity_model)
    subject = model.subject
    # Refused here unless both prompts write out for this model and name the subject.
    parameters.edit_prompts(
        model.manifest,
        source_prompt=source_prompt,
        preset=preset,
        target_prompt=target_prompt,
        negative_prompt=negative_prompt,
    )
    steps, guidance = parameters.edit_sampling(steps, guidance)
    if mask_mode not in MaskMode.values:
        raise parameters.invalid(f"mask_mode must be one of {', '.join(MaskMode.values)}.")
    if (source_photo is None) == (source_upload is None):
        raise parameters.invalid(
            "Choose the photo to edit (source_photo) or upload one (source_upload), one of them."
        )
    clean_photo: intake.CleanPhoto | None = None
    if source_photo is not None:
        photo_size = _photo_of(subject, source_photo, actor)
    else:
        assert source_upload is not None
        require_perm(actor, tenant, "consent.upload_photos_subject", subject)
        # Nothing of the subject is stored for an edit their consent does not cover.
        consent_actions.require(subject, Purpose.EDIT_PHOTOS)
        clean_photo = _intake_photo(subject, source_upload)
        photo_size = (clean_photo.width, clean_photo.height)
    clean_mask = None if mask_upload is None else _intake_mask(mask_upload, photo_size)
    job = EditJob(
        tenant=tenant,
        subject=subject,
        kind="edit",
        identity_model=model,
        source_photo=source_photo,
        mask_mode=mask_mode,
        preset=preset,
        # As asked (templates); the worker writes them out again with the same function. An empty
        # source prompt stays empty: the worker captions the photo (its output records what it used).
        source_prompt=source_prompt,
        target_prompt="" if preset else target_prompt,
        negative_prompt=negative_prompt,
        steps=steps,
        guidance=guidance,
    )
    with files_removed_on_rollback() as stored:
        if clean_photo is not None:
            job.source_photo = consent_actions.store_subject_file(
                subject=subject,
                kind=AssetKind.SOURCE_PHOTO,
                data=clean_photo.data,
                content_type=clean_photo.content_type,
                extension=clean_photo.extension,
                actor=actor,
                label=(getattr(source_upload, "name", None) or "")[:255],
                quality=clean_photo.quality,
            )
            stored.append(job.source_photo.storage_name)
        if clean_mask is not None:
            job.user_mask = consent_actions.store_subject_file(
                subject=subject,
                kind=AssetKind.MASK,
                data=clean_mask.data,
                content_type="image/png",
                extension="png",
                actor=actor,
                label=f"painted mask ({clean_mask.coverage:.0%} of the photo may change)",
                source=job.source_photo,
            )
            stored.append(job.user_mask.storage_name)
        queue_job(actor=actor, job=job, add_permission="editing.add_editjob")
    return job


def withdraw_outputs(subject: Subject) -> list[int]:
    """The erasure hook: every output of the subject is withdrawn (its files go with the subject key).

    Runs inside the erasure's transaction; idempotent (withdrawn ones are left alone).
    """
    now = timezone.now()
    outputs = (
        Output.objects.for_tenant(subject.tenant)
        .filter(subject=subject)
        .exclude(status=OutputStatus.WITHDRAWN)
    )
    ids = sorted(outputs.values_list("pk", flat=True))
    if ids:
        Output.objects.for_tenant(subject.tenant).filter(pk__in=ids).update(
            status=OutputStatus.WITHDRAWN, status_changed_at=now
        )
        audit(
            tenant=subject.tenant,
            action="outputs.withdrawn",
            target=subject,
            payload={"subject_id": subject.pk, "output_ids": ids, "reason": "erasure"},
        )
    return ids
