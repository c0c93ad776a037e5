"""The release registry: what was released, of whom, under which consent, for which use, until when.

A Release is one approved output stamped (editing.provenance.stamp) for one named use. Its file is a
subject file (consent.Asset kind `release`), encrypted with the subject key and destroyed with it; the
row stays as the history, with the signed clearance record, so a release can be proved after erasure.
Release ids are 32-bit (AutoField, a PostgreSQL `integer`): the invisible watermark carries them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from editing.models import subject_file
from tenancy.models import TenantOwnedModel

MAX_CAMPAIGN_CHARS = 200
MAX_SCOPE_ITEMS = 50
MAX_SCOPE_ITEM_CHARS = 100


class Release(TenantOwnedModel):
    """One output released for one use; the stamped file and its signed clearance."""

    id = models.AutoField(primary_key=True)
    output = models.ForeignKey("editing.Output", on_delete=models.PROTECT, related_name="releases")
    subject = models.ForeignKey("consent.Subject", on_delete=models.PROTECT, related_name="releases")
    kind = models.CharField(max_length=16, help_text="The output's: generation or edit.")
    purpose = models.CharField(max_length=32, help_text="generate_images or edit_photos.")
    consent_record = models.ForeignKey("consent.ConsentRecord", on_delete=models.PROTECT, related_name="+")
    consent_text_sha256 = models.CharField(max_length=64, help_text="Of the consent text the subject signed.")
    campaign = models.CharField(max_length=MAX_CAMPAIGN_CHARS, help_text="Campaign or client reference.")
    channels = models.JSONField(default=list)
    territories = models.JSONField(default=list)
    ends_at = models.DateField(help_text="The last day the clearance covers.")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who approved the output.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField()
    file = subject_file("The stamped file (C2PA manifest, XMP, watermark); emptied by erasure.")
    sha256 = models.CharField(max_length=64, db_index=True, help_text="Of the released file's bytes.")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    mime_type = models.CharField(max_length=32)
    clearance = models.JSONField(help_text="The clearance fields, as in the file's manifest.")
    clearance_signature = models.TextField(
        help_text="Base64 signature over the canonical JSON of `clearance`."
    )
    clearance_chain = models.TextField(help_text="PEM chain of the certificate that signed it.")

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("download_release", "Can download released files")]
        indexes = [
            models.Index(fields=["tenant", "subject", "-created_at"], name="release_tenant_subject"),
            models.Index(fields=["tenant", "output"], name="release_tenant_output"),
            models.Index(fields=["tenant", "-created_at", "-id"], name="release_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"release #{self.pk}"


class ReleaseDownload(TenantOwnedModel):
    """One download of a release: who, when, and the SHA-256 of the bytes that left."""

    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="downloads")
    downloaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    downloaded_at = models.DateTimeField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["-downloaded_at", "-id"]

    def __str__(self) -> str:
        return f"download of release #{self.release_id}"
