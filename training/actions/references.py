"""Reference sets: a subject's reference photos prepared for training, versioned, with editable captions.

The set is built by the core's `prepare` (face crops, soft masks, pose captions,
a quality report) on the `default` Celery worker: prepare runs dlib on every
photo, seconds per set, too slow for a web request, and the worker already holds
what erasure and retention need. The set's row says where it is (building,
ready, failed with the reason), and the API returns at once.

Rules:
- a set records the exact reference photos it was built from; when the subject's
  photos change it is stale, and asking for the set (or queueing a training job)
  builds a new version;
- crops and masks are subject files (encrypted with the subject key, stored only
  while a consent is in force), built only while `train_identity` is consented;
- captions can be edited while the set is ready; a caption must keep the set's
  identifier token (training ties the photo to the identity through it); a set
  that a training job used is never changed: the edit makes a new version;
- erasing the subject clears what the set derived from their photos (captions,
  face geometry, quality numbers) with the files: the set is `erased`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.actions import record as audit
from consent import actions as consent_actions
from consent import vault
from consent.actions.common import Actor, acting_user, next_version
from consent.locks import locked_subject
from consent.models import Asset, AssetKind, Purpose, Subject, SubjectKey
from consent.storage import files_removed_on_rollback
from tenancy.permissions import require_perm
from training.actions.common import TrainingActionError, allowed_base_model
from training.models import ReferenceItem, ReferenceSet, ReferenceSetStatus, TrainingJob

logger = logging.getLogger(__name__)

MAX_CAPTION_CHARS = 500
# A set is built from all the subject's reference photos; more than this is refused with the reason.
MAX_REFERENCE_PHOTOS = 200
# A build that started this long ago and never finished lost its worker: it may be claimed again.
BUILD_STALE_AFTER = timedelta(minutes=15)
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
BUILD_FAILED = (
    "The reference set could not be built because of an error in Likeness, not in the photos. The operator "
    "can find the details in the worker's log under reference set {set_id}; building it again may work."
)


# --- reading ---------------------------------------------------------------------------------------
def current_photo_ids(subject: Subject) -> list[int]:
    """The subject's reference photos now (asset ids, ascending): what a fresh set is built from."""
    photos = Asset.objects.for_tenant(subject.tenant).filter(subject=subject, kind=AssetKind.REFERENCE_PHOTO)
    return sorted(photos.values_list("pk", flat=True))


def latest_reference_set(subject: Subject, base_model: str) -> ReferenceSet | None:
    return (
        ReferenceSet.objects.for_tenant(subject.tenant)
        .filter(subject=subject, base_model=base_model)
        .order_by("-version")
        .first()
    )


def is_current(reference_set: ReferenceSet, photo_ids: list[int]) -> bool:
    """Built (or being built) from exactly the subject's photos of now."""
    return sorted(reference_set.photo_ids) == photo_ids


def _stale_build(reference_set: ReferenceSet, now: Any) -> bool:
    started = reference_set.build_started_at or reference_set.created_at
    return reference_set.status == ReferenceSetStatus.BUILDING and now - started > BUILD_STALE_AFTER


def set_hash(reference_set: ReferenceSet, items: list[ReferenceItem]) -> str:
    """The core's dataset hash of the set as training will see it (files' digests and captions)."""
    from personalization.dataset import HashedItem, hash_items

    assert reference_set.resolution is not None
    return hash_items(
        "identity",
        reference_set.resolution,
        reference_set.token,
        reference_set.class_word,
        [
            HashedItem(
                name=item.name,
                image_sha256=item.crop_sha256,
                face_mask_sha256=item.face_mask_sha256,
                style_mask_sha256=None,
                caption=item.caption,
            )
            for item in items
        ],
    )


# --- building ----------------------------------------------------------------------------------------
def request_reference_set(
    *, actor: Actor, subject: Subject, base_model: str | None = None
) -> tuple[ReferenceSet, bool]:
    """The subject's reference set for a base model, from their current photos; True when a build started.

    The latest version is returned as it is when it was built (or is being built)
    from exactly the current photos; otherwise a new version is created and its
    build handed to the default worker when the transaction commits.
    """
    base = allowed_base_model(base_model)
    tenant = subject.tenant
    require_perm(actor, tenant, "training.add_referenceset")
    require_perm(actor, tenant, "consent.view_subject", subject)
    consent_actions.require(subject, Purpose.TRAIN_IDENTITY)
    now = timezone.now()
    with transaction.atomic():
        locked = locked_subject(subject)
        photos = current_photo_ids(locked)
        if not photos:
            raise TrainingActionError(
                f"{locked.display_name} has no reference photos yet: upload some first.", code="no_photos"
            )
        if len(photos) > MAX_REFERENCE_PHOTOS:
            raise TrainingActionError(
                f"{locked.display_name} has {len(photos)} reference photos; a set is built from at most "
                f"{MAX_REFERENCE_PHOTOS}.",
                code="too_many_photos",
            )
        latest = latest_reference_set(locked, base)
        if latest is not None and is_current(latest, photos):
            if latest.status == ReferenceSetStatus.READY:
                return latest, False
            if latest.status == ReferenceSetStatus.BUILDING and not _stale_build(latest, now):
                return latest, False
        if latest is not None and _stale_build(latest, now):
            _mark_failed(latest, "The build was interrupted (its worker stopped); a new version replaces it.")
        reference_set = ReferenceSet.objects.for_tenant(tenant).create(
            subject=locked,
            version=next_version(tenant, ReferenceSet.objects.for_tenant(tenant).filter(subject=locked)),
            status=ReferenceSetStatus.BUILDING,
            base_model=base,
            photo_ids=photos,
            created_at=now,
            created_by=acting_user(actor),
        )
        audit(
            tenant=tenant,
            action="reference_set.requested",
            actor=actor,
            target=reference_set,
            payload={
                "subject_id": locked.pk,
                "version": reference_set.version,
                "photo_ids": photos,
                "replaces_id": latest.pk if latest is not None else None,
            },
        )
        transaction.on_commit(lambda: _enqueue_build(reference_set.pk), robust=True)
    return reference_set, True


def _enqueue_build(set_id: int) -> None:
    from training.tasks import build_reference_set_task

    build_reference_set_task.delay(set_id)


def _mark_failed(reference_set: ReferenceSet, message: str) -> None:
    updated = ReferenceSet.objects.for_tenant(reference_set.tenant).filter(
        pk=reference_set.pk, status=ReferenceSetStatus.BUILDING
    )
    if updated.update(status=ReferenceSetStatus.FAILED, error_message=message[:2000]):
        audit(
            tenant=reference_set.tenant,
            action="reference_set.failed",
            target=reference_set,
            payload={"subject_id": reference_set.subject_id, "version": reference_set.version},
        )


class _Superseded(Exception):  # noqa: N818 (a signal to roll back, not an error)
    """The set stopped being `building` while this build ran (failed as stale meanwhile)."""


def build_reference_set(set_id: int) -> ReferenceSet | None:
    """The worker's side: prepare the photos and store the set, or record why it failed.

    Safe to deliver twice: only a build nobody claimed (or whose claim went stale)
    runs; a second message finds it claimed or finished and does nothing. All the
    files and rows of a build commit together, or none of them (files included).
    """
    now = timezone.now()
    claimable = Q(build_started_at__isnull=True) | Q(build_started_at__lt=now - BUILD_STALE_AFTER)
    claimed = ReferenceSet.dangerously_unscoped.filter(
        claimable, pk=set_id, status=ReferenceSetStatus.BUILDING
    ).update(build_started_at=now)
    if not claimed:
        return None
    reference_set = ReferenceSet.dangerously_unscoped.select_related("tenant", "subject__tenant").get(
        pk=set_id
    )
    scratch = Path(settings.LIKENESS_SCRATCH_ROOT) / f"reference-set-{set_id}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, mode=0o700)
    try:
        _build(reference_set, scratch)
    except _Superseded:
        pass
    except TrainingActionError as error:
        _mark_failed(reference_set, error.message)
    except consent_actions.ConsentRequiredError as error:
        _mark_failed(reference_set, error.message)
    except vault.KeyDestroyedError:
        _mark_failed(reference_set, "The subject's data was erased while the set was being built.")
    except Exception:
        logger.exception("reference set %s failed to build", set_id)
        _mark_failed(reference_set, BUILD_FAILED.format(set_id=set_id))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    reference_set.refresh_from_db()
    return reference_set


def _photo_label(photo_id: int) -> str:
    return f"photo #{photo_id}"


def _build(reference_set: ReferenceSet, scratch: Path) -> None:
    from personalization.dataset import MANIFEST_NAME
    from personalization.models import ModelLoadError, native_resolution
    from personalization.prepare import PrepareError, PrepareOptions, prepare

    subject = reference_set.subject
    consent_actions.require(subject, Purpose.TRAIN_IDENTITY)
    photos = Asset.objects.for_tenant(reference_set.tenant).filter(
        subject=subject, kind=AssetKind.REFERENCE_PHOTO, pk__in=reference_set.photo_ids
    )
    by_name: dict[str, Asset] = {}
    source = scratch / "photos"
    source.mkdir()
    for photo in photos:
        name = f"photo-{photo.pk}.{_EXTENSIONS.get(photo.content_type, 'jpg')}"
        (source / name).write_bytes(vault.read_asset(photo))
        by_name[name] = photo
    if len(by_name) != len(reference_set.photo_ids):
        raise TrainingActionError(
            "Some of the photos this set was to be built from were removed meanwhile: build it again."
        )
    try:
        resolution = native_resolution(reference_set.base_model)
    except ModelLoadError as error:
        raise TrainingActionError(str(error), code="base_model") from None
    out = scratch / "prepared"
    try:
        options = PrepareOptions(
            resolution=resolution, force=True, same_person_threshold=settings.LIKENESS_SAME_PERSON_THRESHOLD
        )
        result = prepare(source, out, options)
    except PrepareError as error:
        if not (out / MANIFEST_NAME).is_file():
            raise TrainingActionError(str(error).replace(str(scratch), "")) from None
        refused = json.loads((out / MANIFEST_NAME).read_text())["rejected"]
        reasons = "; ".join(f"{_photo_label(by_name[r['source']].pk)}: {r['reason']}" for r in refused)
        raise TrainingActionError(f"No photo could be prepared for training: {reasons}.") from None
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    reports = {report.name: report for report in result.reports if report.accepted}
    with files_removed_on_rollback() as stored:
        items = []
        for entry in manifest["images"]:
            photo = by_name[entry["source"]]
            crop_bytes = (out / entry["image"]).read_bytes()
            mask_bytes = (out / entry["face_mask"]).read_bytes()
            files = {}
            for kind, data in ((AssetKind.CROP, crop_bytes), (AssetKind.MASK, mask_bytes)):
                files[kind] = consent_actions.store_subject_file(
                    subject=subject,
                    kind=kind,
                    data=data,
                    content_type="image/png",
                    extension="png",
                    label=f"{kind.label.lower()} {entry['name']} of reference set {reference_set.pk}",
                    source=photo,
                )
                stored.append(files[kind].storage_name)
            report = asdict(reports[entry["name"]])
            items.append(
                ReferenceItem(
                    tenant=reference_set.tenant,
                    reference_set=reference_set,
                    name=entry["name"],
                    photo=photo,
                    crop=files[AssetKind.CROP],
                    face_mask=files[AssetKind.MASK],
                    caption=(out / entry["caption"]).read_text(encoding="utf-8").strip(),
                    crop_sha256=hashlib.sha256(crop_bytes).hexdigest(),
                    face_mask_sha256=hashlib.sha256(mask_bytes).hexdigest(),
                    entry=entry,
                    quality={
                        key: value
                        for key, value in report.items()
                        if key not in ("source", "accepted", "reason", "name", "warnings")
                    },
                    warnings=report["warnings"],
                )
            )
        locked = (
            ReferenceSet.objects.for_tenant(reference_set.tenant).select_for_update().get(pk=reference_set.pk)
        )
        if locked.status != ReferenceSetStatus.BUILDING:
            raise _Superseded()
        ReferenceItem.objects.for_tenant(reference_set.tenant).bulk_create(items)
        locked.status = ReferenceSetStatus.READY
        locked.resolution = int(manifest["resolution"])
        locked.token = str(manifest["token"])
        locked.class_word = str(manifest["class_word"])
        locked.prepare_options = {
            key: value for key, value in manifest.items() if key not in ("images", "rejected")
        }
        locked.prepare_options.pop("dataset_hash", None)
        locked.rejected = [
            {"photo": by_name[refused["source"]].pk, "reason": refused["reason"]}
            for refused in manifest["rejected"]
        ]
        locked.dataset_hash = set_hash(locked, items)
        locked.built_at = timezone.now()
        locked.save()
        audit(
            tenant=reference_set.tenant,
            action="reference_set.built",
            target=locked,
            payload={
                "subject_id": subject.pk,
                "version": locked.version,
                "items": len(items),
                "rejected_photo_ids": [refused["photo"] for refused in locked.rejected],
                "dataset_hash": locked.dataset_hash,
            },
        )


# --- captions ---------------------------------------------------------------------------------------------
def clean_caption(caption: str, token: str) -> str:
    """One line of text (whitespace collapsed), bounded, that keeps the identifier token."""
    text = " ".join(str(caption).split())
    if not text:
        raise TrainingActionError("A caption cannot be empty.", code="caption_empty")
    if len(text) > MAX_CAPTION_CHARS:
        raise TrainingActionError(
            f"A caption is at most {MAX_CAPTION_CHARS} characters (this one has {len(text)}).",
            code="caption_too_long",
        )
    if token not in text:
        raise TrainingActionError(
            f"The caption must keep the identifier token {token}: training ties the photo to the person "
            f"through it (for example: 'a photo of {token} person, smiling').",
            code="caption_token_missing",
        )
    return text


def change_caption(*, actor: Actor, item: ReferenceItem, caption: str) -> ReferenceItem:
    """Edit one caption before training; returns the item as it now reads.

    In place while no training job used the set; otherwise a new version of the
    set is made (the same files, this caption changed) and its item returned, so
    a job's pinned data never changes under it.
    """
    tenant = item.tenant
    require_perm(actor, tenant, "training.change_referenceitem", item)
    reference_set = item.reference_set
    text = clean_caption(caption, reference_set.token)
    with transaction.atomic():
        subject = locked_subject(reference_set.subject)
        locked = ReferenceSet.objects.for_tenant(tenant).select_for_update().get(pk=reference_set.pk)
        if locked.status != ReferenceSetStatus.READY:
            raise TrainingActionError(
                "Captions can be edited once the set is ready "
                f"(it is {locked.get_status_display().lower()}).",
                code="reference_set_not_ready",
            )
        current = locked.items.get(pk=item.pk)
        if current.caption == text:
            return current
        used = TrainingJob.objects.for_tenant(tenant).filter(reference_set=locked).exists()
        target_set = _new_version_from(locked, subject, actor) if used else locked
        target = target_set.items.get(name=current.name)
        target.caption = text
        target.save(update_fields=["caption"])
        target_set.dataset_hash = set_hash(target_set, list(target_set.items.order_by("name")))
        target_set.save(update_fields=["dataset_hash"])
        audit(
            tenant=tenant,
            action="reference_item.caption_changed",
            actor=actor,
            target=target,
            payload={
                "subject_id": subject.pk,
                "reference_set_id": target_set.pk,
                "from_reference_set_id": locked.pk,
                "new_version": used,
            },
        )
    return target


def _new_version_from(source: ReferenceSet, subject: Subject, actor: Actor) -> ReferenceSet:
    """A copy of a used set as a new version: same files (assets are never changed), same captions."""
    tenant = source.tenant
    copy = ReferenceSet.objects.for_tenant(tenant).create(
        subject=subject,
        version=next_version(tenant, ReferenceSet.objects.for_tenant(tenant).filter(subject=subject)),
        status=ReferenceSetStatus.READY,
        base_model=source.base_model,
        resolution=source.resolution,
        token=source.token,
        class_word=source.class_word,
        photo_ids=source.photo_ids,
        rejected=source.rejected,
        prepare_options=source.prepare_options,
        dataset_hash=source.dataset_hash,
        derived_from=source,
        created_at=timezone.now(),
        created_by=acting_user(actor),
        build_started_at=source.build_started_at,
        built_at=source.built_at,
    )
    ReferenceItem.objects.for_tenant(tenant).bulk_create(
        [
            ReferenceItem(
                tenant=tenant,
                reference_set=copy,
                name=item.name,
                photo_id=item.photo_id,
                crop_id=item.crop_id,
                face_mask_id=item.face_mask_id,
                caption=item.caption,
                crop_sha256=item.crop_sha256,
                face_mask_sha256=item.face_mask_sha256,
                entry=item.entry,
                quality=item.quality,
                warnings=item.warnings,
            )
            for item in source.items.order_by("name")
        ]
    )
    audit(
        tenant=tenant,
        action="reference_set.versioned",
        actor=actor,
        target=copy,
        payload={"subject_id": subject.pk, "version": copy.version, "from_reference_set_id": source.pk},
    )
    return copy


# --- erasure ----------------------------------------------------------------------------------------------
def forget_reference_sets(subject: Subject) -> list[int]:
    """The erasure hook: what the sets derived from the erased files (captions, face boxes and landmarks,
    pose, quality numbers) is cleared with them; the rows stay as history (ids, versions, hashes).

    Runs inside the erasure's transaction, after the key is destroyed: the sets built under that key are
    cleared, not one built since under a new consent's key. Idempotent. Returns the sets' ids.
    """
    tenant = subject.tenant
    sets = ReferenceSet.objects.for_tenant(tenant).filter(subject=subject).order_by()
    found = set(sets.values_list("pk", flat=True))
    live_key = SubjectKey.objects.for_tenant(tenant).filter(subject=subject).values_list("key_id", flat=True)
    if found and (key_id := live_key.first()) is not None:
        items = ReferenceItem.objects.for_tenant(tenant)
        built_since = items.filter(reference_set_id__in=found, crop__key_id=key_id)
        found -= set(built_since.order_by().values_list("reference_set_id", flat=True))
    ids = sorted(found)
    ReferenceItem.objects.for_tenant(tenant).filter(reference_set_id__in=ids).update(
        caption="", entry={}, quality={}, warnings=[]
    )
    ReferenceSet.objects.for_tenant(tenant).filter(pk__in=ids).update(
        status=ReferenceSetStatus.ERASED, rejected=[]
    )
    return ids
