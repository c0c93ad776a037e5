"""Storing subject files (always encrypted, only under consent) and the photo intake."""

from __future__ import annotations

import functools
import operator
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.db import connections, models, transaction
from django.db.models import Case, F, Q, When
from django.db.models.deletion import get_candidate_relations_to_delete
from django.db.models.fields.reverse_related import ForeignObjectRel
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
from tenancy.models import Tenant
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
        delete_file_rows(locked.tenant, deleted)
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


@functools.cache
def _references_to_files() -> dict[type[models.Model], tuple[tuple[str, str], ...]]:
    """Every foreign key to a file row as (field name, column), by model; each must be SET_NULL (the
    contract in consent.erasure)."""
    columns: defaultdict[type[models.Model], list[tuple[str, str]]] = defaultdict(list)
    # The relations Django's own delete() visits: hidden ones too (related_name="+").
    for relation in get_candidate_relations_to_delete(Asset._meta):
        assert isinstance(relation, ForeignObjectRel)
        if relation.on_delete is not models.SET_NULL:
            raise ImproperlyConfigured(f"{relation.field} must be on_delete=SET_NULL: see consent.erasure.")
        columns[relation.field.model].append((relation.field.name, relation.field.column))
    return {model: tuple(names) for model, names in columns.items()}


def delete_file_rows(tenant: Tenant, asset_ids: Sequence[int]) -> None:
    """Delete these file rows, emptying every reference to them first.

    What Django's delete() does for SET_NULL, without reading the rows again and without one
    UPDATE per referring column (15 columns in 8 tables today), on an erasure's path: on PostgreSQL
    one statement, elsewhere one UPDATE per referring table. The caller holds the subject lock and
    removes the stored bytes itself.
    """
    if not asset_ids:
        return
    ids = list(asset_ids)
    rows = Asset.objects.for_tenant(tenant).filter(pk__in=ids)
    connection = connections[rows.db]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_delete_file_rows_statement(), {"ids": ids, "tenant": tenant.pk})
        return
    for model, fields in _references_to_files().items():
        names = [name for name, _ in fields]
        pointing = functools.reduce(operator.or_, (Q(**{f"{name}__in": ids}) for name in names))
        model._base_manager.filter(pointing).update(
            **{name: Case(When(**{f"{name}__in": ids}, then=None), default=F(name)) for name in names}
        )
    rows._raw_delete(rows.db)  # no collector: every reference is empty now


@functools.cache
def _delete_file_rows_statement() -> str:
    """PostgreSQL: one UPDATE per referring table, each a CTE (one table each), and the DELETE.

    The statement's parts see one snapshot and no row is touched twice (a file row to be deleted is
    not also emptied); the foreign keys are deferred, so they are checked at commit, when every
    reference is gone.
    """
    quote = connections["default"].ops.quote_name
    parts = []
    for n, (model, fields) in enumerate(_references_to_files().items()):
        columns = [quote(column) for _, column in fields]
        emptied = ", ".join(f"{c} = CASE WHEN {c} = ANY(%(ids)s) THEN NULL ELSE {c} END" for c in columns)
        pointing = " OR ".join(f"{c} = ANY(%(ids)s)" for c in columns)
        if model is Asset:
            pointing = f"({pointing}) AND NOT ({quote(Asset._meta.pk.column)} = ANY(%(ids)s))"
        table = quote(model._meta.db_table)
        parts.append(f"emptied_{n} AS (UPDATE {table} SET {emptied} WHERE {pointing})")  # noqa: S608 (names from models)
    files, key = quote(Asset._meta.db_table), quote(Asset._meta.pk.column)
    deleted = f"DELETE FROM {files} WHERE {quote('tenant_id')} = %(tenant)s AND {key} = ANY(%(ids)s)"  # noqa: S608
    return f"WITH {', '.join(parts)} {deleted}"
