"""Finding the release an image came from, and what the asker may learn about it.

The lookup, cheapest and surest first: the exact SHA-256 of the uploaded bytes (indexed); else the
C2PA manifest's clearance `release_id`, only when the manifest is valid AND its signer chains to the
configured trust anchors (LIKENESS_C2PA_TRUST_ANCHORS) AND its clearance is the registry's own (anyone
can sign a manifest naming a release id); else the invisible watermark, read at the distinct sizes
releases were issued at (at most MAX_RELEASE_SIZES of them, the most recent). The watermark is a
lookup key, not a proof: anyone who knows the scheme can write a number into a file.

Users of the owning tenant (with `editing.view_release` there) learn the release: subject, scope and
whether the clearance is valid now, and why not. Anyone else learns only that the image is a release of
this platform and whether it is valid now, nothing about the person or the tenant. Found releases are
audited in the owning tenant (`release.verified`: release, how it was found, valid, whether the asker
was a member); the uploaded bytes are never stored or logged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Max

from audit.actions import record as audit
from consent.actions import Actor
from editing.provenance import c2pa
from editing.provenance.stamp import inspect
from editing.releases import gate
from editing.releases.models import Release
from tenancy.permissions import has_perm

# Sizes tried for a resized copy's watermark: each costs a decode of the upload at that size.
MAX_RELEASE_SIZES = 8


class VerifyError(ValueError):
    """The upload is not an image the verifier reads (type, pixels, damage); the message says which."""


@dataclass(frozen=True)
class Verification:
    """The answer: `release` is set only for the owning tenant's members (`owner`)."""

    found: bool
    valid: bool
    matched_by: str = ""
    owner: bool = False
    release: Release | None = None
    reason: str = ""
    reason_code: str = ""

    def public(self) -> dict[str, Any]:
        """What anyone may be told."""
        return {"found": self.found, "valid": self.valid}


def read_upload(upload: Any) -> bytes:
    """The uploaded bytes, refused past LIKENESS_MAX_UPLOAD_BYTES (a photo's limit) without reading on."""
    limit = settings.LIKENESS_MAX_UPLOAD_BYTES
    data = bytes(upload.read(limit + 1))
    if len(data) > limit:
        raise VerifyError(f"The image is larger than {limit // (1024 * 1024)} MiB.")
    return data


def release_sizes() -> list[tuple[int, int]]:
    """The distinct (width, height) of released files, most recently used first, bounded."""
    sizes = (
        Release.dangerously_unscoped.values_list("width", "height")
        .annotate(latest=Max("created_at"))
        .order_by("-latest")[:MAX_RELEASE_SIZES]
    )
    return [(width, height) for width, height, _ in sizes]


def _trust_anchors() -> bytes | None:
    path = settings.LIKENESS_C2PA_TRUST_ANCHORS
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def find_release(data: bytes) -> tuple[Release | None, str]:
    """The release `data` is (or was made from) and how it was found; (None, "") when none."""
    digest = hashlib.sha256(data).hexdigest()
    exact = Release.dangerously_unscoped.filter(sha256=digest).exclude(sha256="").first()
    if exact is not None:
        return exact, "sha256"
    try:
        found = inspect(
            data,
            sizes=release_sizes(),
            trust_anchors_pem=_trust_anchors(),
            max_pixels=settings.LIKENESS_MAX_IMAGE_PIXELS,
        )
    except c2pa.ProvenanceError as error:
        raise VerifyError(str(error)) from None
    clearance = found.manifest.clearance or {}
    claimed = str(clearance.get("release_id", ""))
    if found.manifest.valid and found.manifest.trusted and claimed.isdigit():
        signed = Release.dangerously_unscoped.filter(pk=int(claimed)).first()
        if signed is not None and signed.clearance == clearance:
            return signed, "manifest"
    if found.watermark is not None:
        marked = Release.dangerously_unscoped.filter(pk=found.watermark).first()
        if marked is not None:
            return marked, "watermark"
    return None, ""


def verify_image(*, actor: Actor, data: bytes) -> Verification:
    """Look `data` up and judge its clearance now; VerifyError when it is not a readable JPEG or PNG."""
    try:
        c2pa.mime_type_of(data)
    except c2pa.ProvenanceError as error:
        raise VerifyError(str(error)) from None
    release, matched_by = find_release(data)
    if release is None:
        return Verification(found=False, valid=False)
    release = Release.dangerously_unscoped.select_related(
        "tenant", "subject", "output__subject", "consent_record"
    ).get(pk=release.pk)
    reason, code = "", ""
    try:
        gate.check(release.output, consent_record=release.consent_record, ends_at=release.ends_at)
    except gate.ReleaseRefusedError as refusal:
        reason, code = refusal.message, refusal.code
    owner = has_perm(actor, release.tenant, "editing.view_release")
    audit(
        tenant=release.tenant,
        action="release.verified",
        actor=actor if owner else None,
        target=release,
        payload={
            "subject_id": release.subject_id,
            "release_id": release.pk,
            "matched_by": matched_by,
            "valid": not code,
            "by_member": owner,
        },
    )
    return Verification(
        found=True,
        valid=not code,
        matched_by=matched_by,
        owner=owner,
        release=release if owner else None,
        reason=reason if owner else "",
        reason_code=code if owner else "",
    )
