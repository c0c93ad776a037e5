"""The release write path: create a release, download it. Views, the API and commands call only these.

Both run the gate (editing.releases.gate) under the subject's row lock, so neither can slip past a
revocation, a veto or an erasure being written at the same moment; both are audited in the same
transaction with the subject, ids and the released file's SHA-256 (never a name or the bytes).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Literal

from django.db import transaction
from django.utils import timezone
from PIL import Image

from audit.actions import record as audit
from consent import actions as consent_actions
from consent import vault
from consent.actions import Actor
from consent.actions.common import acting_user
from consent.locks import locked_subject
from consent.models import Asset, AssetKind, ConsentRecord
from editing.models import Output, OutputKind
from editing.provenance import c2pa
from editing.provenance.stamp import stamp
from editing.releases import clearance, gate
from editing.releases.models import (
    MAX_CAMPAIGN_CHARS,
    MAX_SCOPE_ITEM_CHARS,
    MAX_SCOPE_ITEMS,
    Release,
    ReleaseDownload,
)
from editing.review import PURPOSE_OF_KIND
from tenancy.permissions import require_perm
from tenancy.tenant_settings import tenant_setting

_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}


class ReleaseScopeError(Exception):
    """A release asked for a use the request or the consent does not allow; `field` names the input."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class ReleasedFile:
    """What a download hands out: the stamped bytes, their hash and the attachment's name."""

    data: bytes
    sha256: str
    content_type: str
    filename: str


def release_filename(release: Release) -> str:
    return f"likeness-release-{release.pk}.{_EXTENSIONS.get(release.mime_type, 'bin')}"


def _clean_list(values: Iterable[str], field: str) -> list[str]:
    if isinstance(values, str):
        raise ReleaseScopeError(f"Give {field} as a list of values.", field)
    cleaned = list(dict.fromkeys(str(value).strip() for value in values))
    if not cleaned or "" in cleaned:
        raise ReleaseScopeError(f"Name at least one of the {field} the image will be used in.", field)
    if len(cleaned) > MAX_SCOPE_ITEMS:
        raise ReleaseScopeError(f"{len(cleaned)} {field} is too many: at most {MAX_SCOPE_ITEMS}.", field)
    long = next((value for value in cleaned if len(value) > MAX_SCOPE_ITEM_CHARS), None)
    if long is not None:
        raise ReleaseScopeError(f"Each of the {field} is at most {MAX_SCOPE_ITEM_CHARS} characters.", field)
    return cleaned


def _within(requested: list[str], allowed: list[str], field: str) -> None:
    """A consent that lists its channels (territories) allows those only; one that lists none, any."""
    outside = [value for value in requested if allowed and value not in allowed]
    if outside:
        raise ReleaseScopeError(
            f"The consent does not cover the {field} {', '.join(outside)}: it allows {', '.join(allowed)}.",
            field,
        )


def _read(asset: Asset, what: str) -> bytes:
    """A subject file's bytes; an erased subject's (key destroyed, withdrawal still running) is a refusal."""
    try:
        return vault.read_asset(asset)
    except vault.KeyDestroyedError:
        raise gate.ReleaseRefusedError(
            f"{what} was erased with the person's data.", "output_withdrawn"
        ) from None


def _check_scope(record: ConsentRecord, channels: list[str], territories: list[str], ends_at: date) -> None:
    _within(channels, list(record.channels), "channels")
    _within(territories, list(record.territories), "territories")
    if ends_at < timezone.localdate():
        raise ReleaseScopeError("The end date is in the past.", "ends_at")
    if record.expires_at is not None and ends_at > timezone.localdate(record.expires_at):
        expiry = timezone.localdate(record.expires_at).isoformat()
        raise ReleaseScopeError(f"The end date is after the consent expires ({expiry}).", "ends_at")


def create_release(
    *,
    actor: Actor,
    output: Output,
    campaign: str,
    channels: Iterable[str],
    territories: Iterable[str],
    ends_at: date,
) -> Release:
    """Release an approved output for one named use: stamp it, store it, sign and record its clearance.

    ReleaseScopeError (the request) or gate.ReleaseRefusedError (the output or consent) says why not; nothing
    is written then. The stamping runs under the subject lock (about a second for a 512 px image), so the
    file and its clearance are those of a consent that was in force when the release was recorded.
    """
    tenant = output.tenant
    require_perm(actor, tenant, "editing.add_release")
    campaign = (campaign or "").strip()
    if not campaign:
        raise ReleaseScopeError(
            "Name the campaign or client reference the image is released for.", "campaign"
        )
    if len(campaign) > MAX_CAMPAIGN_CHARS:
        raise ReleaseScopeError(f"The campaign is at most {MAX_CAMPAIGN_CHARS} characters.", "campaign")
    channel_list = _clean_list(channels, "channels")
    territory_list = _clean_list(territories, "territories")
    signer = clearance.platform_signer()
    with transaction.atomic():
        subject = locked_subject(output.subject)
        output = Output.objects.for_tenant(tenant).select_for_update().get(pk=output.pk)
        record = gate.check(output)
        _check_scope(record, channel_list, territory_list, ends_at)
        if output.decided_by is None:  # approved outputs always carry their approver
            raise gate.ReleaseRefusedError(
                f"Output #{output.pk} has no recorded approver.", "output_pending_review"
            )
        now = timezone.now()
        kind: Literal["generation", "edit"] = "generation" if output.kind == OutputKind.GENERATION else "edit"
        release = Release.objects.for_tenant(tenant).create(
            output=output,
            subject=subject,
            kind=kind,
            purpose=PURPOSE_OF_KIND[OutputKind(output.kind)].value,
            consent_record=record,
            consent_text_sha256=record.template_sha256,
            campaign=campaign,
            channels=channel_list,
            territories=territory_list,
            ends_at=ends_at,
            approver=output.decided_by,
            created_by=acting_user(actor),
            created_at=now,
            width=0,
            height=0,
            clearance={},
        )
        fields = {
            "release_id": str(release.pk),
            "tenant_id": str(tenant.pk),
            "consent_record_id": str(record.pk),
            "consent_text_sha256": record.template_sha256,
            "purposes": [release.purpose],
            "channels": channel_list,
            "territories": territory_list,
            "ends_at": ends_at.isoformat(),
            "approver_id": str(output.decided_by_id),
        }
        assert output.image is not None  # the gate refused an erased image
        source_sha256 = None
        if kind == "edit":
            if output.source_photo is None:
                raise gate.ReleaseRefusedError(
                    f"Output #{output.pk}'s source photo was erased.", "output_withdrawn"
                )
            source_sha256 = hashlib.sha256(_read(output.source_photo, "The source photo")).hexdigest()
        stamped = stamp(
            _read(output.image, f"Output #{output.pk}'s image"),
            kind=kind,
            release_id=release.pk,
            clearance=fields,
            source_photo_sha256=source_sha256,
            visible_label=bool(tenant_setting(tenant, "require_visible_ai_label")),
            signer=signer,
        )
        mime_type = c2pa.mime_type_of(stamped)
        with Image.open(io.BytesIO(stamped)) as opened:
            release.width, release.height = opened.size
        release.file = consent_actions.store_subject_file(
            subject=subject,
            kind=AssetKind.RELEASE,
            data=stamped,
            content_type=mime_type,
            extension=_EXTENSIONS[mime_type],
            actor=actor,
            label=f"release {release.pk}",
            source=output.image,
        )
        release.sha256 = hashlib.sha256(stamped).hexdigest()
        release.mime_type = mime_type
        release.clearance = c2pa.check_clearance(fields)
        release.clearance_signature = clearance.sign(release.clearance, signer)
        release.clearance_chain = signer.chain_pem.decode()
        release.save()
        audit(
            tenant=tenant,
            action="release.created",
            actor=actor,
            target=release,
            payload={
                "subject_id": subject.pk,
                "output_id": output.pk,
                "release_id": release.pk,
                "consent_record_id": record.pk,
                "campaign": campaign,
                "channels": channel_list,
                "territories": territory_list,
                "ends_at": ends_at.isoformat(),
                "sha256": release.sha256,
            },
        )
    return release


def download_release(*, actor: Actor, release: Release) -> ReleasedFile:
    """The released file, if the gate still allows it now; the download is recorded and audited.

    Raises gate.ReleaseRefusedError (with the reason) when the output, the consent or the clearance no
    longer allows the use, vault.AssetIntegrityError when the stored file is not the one released.
    """
    tenant = release.tenant
    require_perm(actor, tenant, "editing.download_release")
    with transaction.atomic():
        subject = locked_subject(release.subject, tenant)
        release = (
            Release.objects.for_tenant(tenant)
            .select_related("output__subject", "consent_record", "file")
            .get(pk=release.pk)
        )
        gate.check(release.output, consent_record=release.consent_record, ends_at=release.ends_at)
        if release.file is None:
            raise gate.ReleaseRefusedError(
                "This release's file was erased with the person's data.", "output_withdrawn"
            )
        data = _read(release.file, "This release's file")
        digest = hashlib.sha256(data).hexdigest()
        if digest != release.sha256:
            raise vault.AssetIntegrityError(release.file.pk)
        ReleaseDownload.objects.for_tenant(tenant).create(
            release=release, downloaded_by=acting_user(actor), downloaded_at=timezone.now(), sha256=digest
        )
        audit(
            tenant=tenant,
            action="release.downloaded",
            actor=actor,
            target=release,
            payload={"subject_id": subject.pk, "release_id": release.pk, "sha256": digest},
        )
    return ReleasedFile(
        data=data, sha256=digest, content_type=release.mime_type, filename=release_filename(release)
    )
