"""Storing subject files (always encrypted, only under consent) and the photo intake."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from audit.actions import record as audit
from consent import crypto, intake, vault
from consent.actions.common import Actor, ConsentActionError, acting_user
from consent.actions.gate import require_any
from consent.actions.retention import asset_retain_until, subject_retain_until, touch_subject
from consent.locks import locked_subject
from consent.models import Asset, AssetKind, Subject, SubjectKey
from consent.storage import private_storage
from consent.tokens import sha256_hex
from tenancy.permissions import require_perm


def store_subject_file(
    *,
    subject: Subject,
    kind: AssetKind | str,
    data: bytes,
    content_type: str,
    extension: str,
    actor: Actor = None,
    label: str = "",
    source: Asset | None = None,
    quality: dict[str, float] | None = None,
    retain_for_days: int | None = None,
) -> Asset:
    """Encrypt `data` with the subject key and store it privately: how every app stores a subject's file.

    Refused unless a consent of the subject is in force now. The caller has
    checked its own purpose with require() and its own permission.
    """
    asset_kind = AssetKind(kind)
    now = timezone.now()
    with transaction.atomic():
        locked = locked_subject(subject)
        require_any(locked, now)
        subject_key = SubjectKey.objects.for_tenant(locked.tenant).filter(subject=locked).first()
        if subject_key is None:
            key_id, wrapped = vault.new_wrapped_key(locked.tenant_id)
            subject_key = SubjectKey.objects.for_tenant(locked.tenant).create(
                subject=locked, key_id=key_id, wrapped_key=wrapped, created_at=now
            )
            audit(
                tenant=locked.tenant,
                action="subject_key.created",
                target=subject_key,
                payload={"subject_id": locked.pk, "key_id": str(key_id)},
            )
        envelope = crypto.seal(vault.unwrap(subject_key), subject_key.key_id, data)
        name = vault.storage_name(
            locked.tenant_id, locked.pk, subject_key.key_id, asset_kind.value, extension
        )
        storage = private_storage()
        stored_name = storage.save(name, ContentFile(envelope))
        try:
            asset = Asset.objects.for_tenant(locked.tenant).create(
                subject=locked,
                kind=asset_kind,
                key_id=subject_key.key_id,
                storage_name=stored_name,
                sha256=sha256_hex(envelope),
                size_bytes=len(data),
                content_type=content_type,
                label=label[:255],
                source=source,
                quality=quality or {},
                retain_for_days=retain_for_days,
                retain_until=asset_retain_until(subject_retain_until(locked), now, retain_for_days),
                created_at=now,
                created_by=acting_user(actor),
            )
            audit(
                tenant=locked.tenant,
                action="asset.stored",
                actor=actor,
                target=asset,
                payload={"subject_id": locked.pk, "kind": asset_kind.value},
            )
        except BaseException:
            storage.delete(stored_name)
            raise
    return asset


class UploadedPhoto(Protocol):
    """What the upload actions need of a file: Django's UploadedFile, or any named binary stream."""

    name: str | None

    def read(self, size: int = ..., /) -> bytes: ...


@dataclass(frozen=True)
class RejectedPhoto:
    name: str
    code: str
    message: str


@dataclass
class IntakeReport:
    accepted: list[Asset] = field(default_factory=list)
    rejected: list[RejectedPhoto] = field(default_factory=list)


def intake_limits() -> intake.IntakeLimits:
    return intake.IntakeLimits(
        max_bytes=settings.LIKENESS_MAX_UPLOAD_BYTES,
        max_pixels=settings.LIKENESS_MAX_IMAGE_PIXELS,
        min_face_px=settings.LIKENESS_MIN_FACE_PX,
        same_person_threshold=settings.LIKENESS_SAME_PERSON_THRESHOLD,
    )


def _store_photo(
    *, subject: Subject, actor: Actor, kind: AssetKind, clean: intake.CleanPhoto, label: str
) -> Asset:
    with transaction.atomic():
        photo = store_subject_file(
            subject=subject,
            kind=kind,
            data=clean.data,
            content_type=clean.content_type,
            extension=clean.extension,
            actor=actor,
            label=label,
            quality=clean.quality,
        )
        store_subject_file(
            subject=subject,
            kind=AssetKind.FACE_EMBEDDING,
            data=vault.embedding_to_bytes(clean.embedding),
            content_type="application/x-npy",
            extension="npy",
            actor=actor,
            source=photo,
        )
    return photo


def set_enrollment_photo(*, actor: Actor, subject: Subject, upload: UploadedPhoto) -> Asset:
    """The photo every reference photo is compared with. Set once; erasure clears it."""
    require_perm(actor, subject.tenant, "consent.upload_photos_subject", subject)
    if subject.enrollment_photo_id is not None:
        raise ConsentActionError("This subject already has an enrollment photo.")
    require_any(subject, timezone.now())
    limits = intake_limits()
    name = getattr(upload, "name", None) or ""
    clean = intake.check_photo(intake.read_capped(upload, limits.max_bytes), name, limits)
    with transaction.atomic():
        photo = _store_photo(
            subject=subject, actor=actor, kind=AssetKind.ENROLLMENT_PHOTO, clean=clean, label=name
        )
        locked = locked_subject(subject)
        if locked.enrollment_photo_id is not None:
            raise ConsentActionError("This subject already has an enrollment photo.")
        locked.enrollment_photo = photo
        locked.save(update_fields=["enrollment_photo"])
        audit(
            tenant=locked.tenant,
            action="subject.enrollment_photo_set",
            actor=actor,
            target=locked,
            payload={"asset_id": photo.pk},
        )
    subject.enrollment_photo = photo
    touch_subject(subject)
    return photo


def enrollment_embedding(subject: Subject) -> Any:
    photo = subject.enrollment_photo
    if photo is None:
        raise ConsentActionError(
            "Set the subject's enrollment photo first: every reference photo is compared with it."
        )
    embedding = photo.derived.filter(kind=AssetKind.FACE_EMBEDDING).order_by("id").first()
    if embedding is None:
        raise ConsentActionError(
            "The enrollment photo has no face embedding; set the enrollment photo again."
        )
    return vault.embedding_from_bytes(vault.read_asset(embedding))


def upload_reference_photos(
    *, actor: Actor, subject: Subject, uploads: Sequence[UploadedPhoto]
) -> IntakeReport:
    """Check each file on its own: every rejection gets its reason, every accepted file is kept."""
    require_perm(actor, subject.tenant, "consent.upload_photos_subject", subject)
    require_any(subject, timezone.now())
    reference = enrollment_embedding(subject)
    limits = intake_limits()
    report = IntakeReport()
    for upload in uploads:
        name = getattr(upload, "name", None) or ""
        try:
            clean = intake.check_photo(
                intake.read_capped(upload, limits.max_bytes), name, limits, enrollment_embedding=reference
            )
        except intake.PhotoRejectedError as rejection:
            report.rejected.append(
                RejectedPhoto(name=name, code=rejection.code.value, message=rejection.message)
            )
            audit(
                tenant=subject.tenant,
                action="photo.rejected",
                actor=actor,
                target=subject,
                payload={"code": rejection.code.value},
            )
            continue
        report.accepted.append(
            _store_photo(
                subject=subject, actor=actor, kind=AssetKind.REFERENCE_PHOTO, clean=clean, label=name
            )
        )
    if report.accepted:
        touch_subject(subject)
    return report


# The photos people upload (the enrollment photo and reference photos), as opposed to derived files.
PHOTO_KINDS = (AssetKind.ENROLLMENT_PHOTO, AssetKind.REFERENCE_PHOTO)


def delete_photo(*, actor: Actor, photo: Asset) -> list[int]:
    """Delete one uploaded photo and the face embedding made from it; the asset ids deleted.

    Under the subject lock, so no upload compares a new photo with an enrollment photo that is going.
    The enrollment photo stays while reference photos exist: each was accepted as the same person by
    comparison with it. Reference sets built from a deleted photo become stale (their photo_ids no
    longer match; training.actions.references). Crops and other files made from it keep their rows
    with `source` emptied. The ciphertext is removed from storage once the transaction commits; if
    that fails the orphan stays encrypted under the subject key and the subject's erasure sweeps it.
    """
    subject = photo.subject
    require_perm(actor, subject.tenant, "consent.upload_photos_subject", subject)
    if photo.kind not in PHOTO_KINDS:
        raise ConsentActionError("Only uploaded photos can be deleted here.")
    with transaction.atomic():
        locked = locked_subject(subject)
        current = Asset.objects.for_tenant(locked.tenant).filter(pk=photo.pk, subject=locked).first()
        if current is None:
            raise ConsentActionError("This photo is already deleted.")
        if current.kind == AssetKind.ENROLLMENT_PHOTO:
            references = locked.assets.filter(kind=AssetKind.REFERENCE_PHOTO).count()
            if references:
                raise ConsentActionError(
                    f"The enrollment photo cannot be deleted while {references} reference "
                    f"photo{'s' if references != 1 else ''} were checked against it: delete "
                    f"{'them' if references != 1 else 'it'} first."
                )
            locked.enrollment_photo = None
            locked.save(update_fields=["enrollment_photo"])
        doomed = [*current.derived.filter(kind=AssetKind.FACE_EMBEDDING).order_by("id"), current]
        names = [asset.storage_name for asset in doomed]
        deleted = [asset.pk for asset in doomed]
        Asset.objects.for_tenant(locked.tenant).filter(pk__in=deleted).delete()
        audit(
            tenant=locked.tenant,
            action="photo.deleted",
            actor=actor,
            target=locked,
            payload={
                "subject_id": locked.pk,
                "asset_id": current.pk,
                "kind": current.kind,
                "deleted_asset_ids": deleted,
            },
        )

        def remove_files() -> None:
            storage = private_storage()
            for name in names:
                storage.delete(name)

        transaction.on_commit(remove_files, robust=True)
    subject.enrollment_photo = locked.enrollment_photo
    return deleted
