"""Style sets: a tenant's style photos for the multiconcept method, versioned by name.

A style photo teaches the look (setting, light, clothing), never a person, so
style sets sit outside the consent gate and are not subject files. What keeps
them from becoming a back door for a likeness is the face rule: a photo with a
face at least LIKENESS_MIN_FACE_PX across (the smallest face Likeness accepts as
a reference photo) or at least LIKENESS_STYLE_MAX_FACE_FRACTION of the photo's
shorter side is refused with that reason. Every file first passes the same
hostile-input checks as a subject's photos (consent.intake.check_image).

A version is exactly the photos sent: if any is refused, none is stored and
every refusal is reported, so the sender fixes the batch and sends it again.
Files live in the private storage (no URL), unencrypted: docs/compliance.md
says why and what that leaves.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.utils import timezone

from audit.actions import record as audit
from consent import intake
from consent.actions import RejectedPhoto, UploadedPhoto, intake_limits
from consent.actions.common import Actor, acting_user, next_version
from consent.storage import files_removed_on_rollback, private_storage
from consent.tokens import sha256_hex
from tenancy.models import Tenant
from tenancy.permissions import require_perm
from training.actions.common import TrainingActionError
from training.models import StylePhoto, StyleSet

MAX_NAME_CHARS = 100
LIKENESS_CODE = "face_is_a_likeness"


class StylePhotosRejectedError(TrainingActionError):
    """At least one style photo was refused; `rejected` holds each one's reason. Nothing was stored."""

    def __init__(self, rejected: list[RejectedPhoto]) -> None:
        super().__init__(
            f"{len(rejected)} of the photos cannot be style photos; nothing was stored. Remove or replace "
            "them and send the set again.",
            code="style_photos_rejected",
        )
        self.rejected = rejected


class StylePhotoRefusedError(Exception):
    """One style photo refused: `code` (intake's codes, or face_is_a_likeness) and a sentence."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _CheckedStylePhoto:
    clean: intake.CleanImage
    largest_face_px: int


def largest_face_px(image: intake.CleanImage) -> int:
    """The larger side of the largest face found (0: none)."""
    from personalization import faces

    found = faces.detect_faces(image.rgb)
    return max((max(face.box.width, face.box.height) for face in found), default=0)


def check_style_photo(data: bytes, filename: str) -> _CheckedStylePhoto:
    """The hostile-input checks, then the face rule; StylePhotoRefusedError with the reason."""
    try:
        clean = intake.check_image(data, filename, intake_limits())
    except intake.PhotoRejectedError as rejection:
        raise StylePhotoRefusedError(rejection.code.value, rejection.message) from None
    face_px = largest_face_px(clean)
    limit_px = settings.LIKENESS_MIN_FACE_PX
    fraction = face_px / min(clean.width, clean.height)
    if face_px and (face_px >= limit_px or fraction >= settings.LIKENESS_STYLE_MAX_FACE_FRACTION):
        raise StylePhotoRefusedError(
            LIKENESS_CODE,
            f"The photo shows a face {face_px} pixels across ({fraction:.0%} of its shorter side): a face "
            f"from {limit_px} pixels or {settings.LIKENESS_STYLE_MAX_FACE_FRACTION:.0%} of the side up is "
            "a person's likeness, which needs that person's consent. Use a photo without a recognisable "
            "face.",
        )
    return _CheckedStylePhoto(clean=clean, largest_face_px=face_px)


def create_style_set(
    *, actor: Actor, tenant: Tenant, name: str, uploads: Sequence[UploadedPhoto]
) -> StyleSet:
    """A new version of the named style set, holding exactly `uploads` (all checked, or none stored)."""
    require_perm(actor, tenant, "training.add_styleset")
    title = " ".join(str(name).split())
    if not title or len(title) > MAX_NAME_CHARS:
        raise TrainingActionError(f"A style set needs a name of 1 to {MAX_NAME_CHARS} characters.")
    if not uploads:
        raise TrainingActionError("Attach one or more style photos.", code="no_photos")
    limits = intake_limits()
    checked: list[_CheckedStylePhoto] = []
    rejected: list[RejectedPhoto] = []
    for upload in uploads:
        filename = getattr(upload, "name", None) or ""
        try:
            checked.append(check_style_photo(intake.read_capped(upload, limits.max_bytes), filename))
        except StylePhotoRefusedError as refusal:
            rejected.append(RejectedPhoto(name=filename[:255], code=refusal.code, message=refusal.message))
    if rejected:
        audit(
            tenant=tenant,
            action="style_set.rejected",
            actor=actor,
            payload={"codes": sorted({photo.code for photo in rejected}), "photos": len(uploads)},
        )
        raise StylePhotosRejectedError(rejected)
    storage = private_storage()
    with files_removed_on_rollback() as stored:
        versions = StyleSet.objects.for_tenant(tenant).filter(name=title)
        style_set = StyleSet.objects.for_tenant(tenant).create(
            name=title,
            version=next_version(tenant, versions),
            created_at=timezone.now(),
            created_by=acting_user(actor),
        )
        for photo in checked:
            image = photo.clean
            stored_name = storage.save(
                f"tenants/{tenant.pk}/styles/{style_set.pk}/{uuid.uuid4().hex}.{image.extension}",
                ContentFile(image.data),
            )
            stored.append(stored_name)
            StylePhoto.objects.for_tenant(tenant).create(
                style_set=style_set,
                storage_name=stored_name,
                sha256=sha256_hex(image.data),
                size_bytes=len(image.data),
                content_type=image.content_type,
                extension=image.extension,
                width=image.width,
                height=image.height,
                largest_face_px=photo.largest_face_px,
            )
        audit(
            tenant=tenant,
            action="style_set.created",
            actor=actor,
            target=style_set,
            payload={"version": style_set.version, "photos": len(checked)},
        )
    return style_set


class StylePhotoDamagedError(Exception):
    """A stored style photo is not the file that was stored (altered or damaged in storage)."""


def read_style_photo(photo: StylePhoto) -> bytes:
    """The stored file, after checking it against the SHA-256 recorded when it was stored."""
    with private_storage().open(photo.storage_name, "rb") as handle:
        data: bytes = handle.read()
    if sha256_hex(data) != photo.sha256:
        raise StylePhotoDamagedError(f"style photo #{photo.pk} failed its integrity check")
    return data
