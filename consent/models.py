"""Subjects, consent, retention and erasure: the rows a legal reviewer relies on.

Evidence rows (retention schedules, consent templates, links, their delivery
attempts, records and revocations) are write-once: the model refuses to save a
change or delete one, and on PostgreSQL a trigger (migrations 0002, 0003)
refuses UPDATE and DELETE for every role. History is a sequence of new rows,
never an edit.

Writes happen only in consent.actions.
"""

from __future__ import annotations

import uuid
from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from tenancy.models import TenantOwnedModel


class ImmutableRecordError(Exception):
    """Someone tried to edit or delete a consent or retention evidence row."""


class WriteOnceModel(TenantOwnedModel):
    """Evidence that may be inserted once and never changed or removed.

    Its user foreign keys are PROTECT: a SET_NULL would be an UPDATE, and users
    who signed off evidence are deactivated, never deleted.
    """

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding or kwargs.get("force_update") or kwargs.get("update_fields"):
            raise ImmutableRecordError(
                f"{self._meta.verbose_name} rows are never edited: record a new one instead."
            )
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ImmutableRecordError(f"{self._meta.verbose_name} rows are never deleted.")


class Purpose(models.TextChoices):
    """Each use of a likeness the subject consents to separately."""

    TRAIN_IDENTITY = "train_identity", "Train an identity model of my face"
    GENERATE_IMAGES = "generate_images", "Generate new images of me"
    EDIT_PHOTOS = "edit_photos", "Edit existing photos of me (expression, pose)"


class Representation(models.TextChoices):
    COUNSEL = "counsel", "I was represented by legal counsel"
    UNION = "union", "I am covered by a union / collective agreement"
    NONE = "none", "I was not represented"


class CaptureChannel(models.TextChoices):
    """How the signer proved to be the subject: holding the e-mailed link, or a code e-mailed there."""

    SIGNED_LINK = "signed_link", "Signed, expiring link e-mailed to the subject and opened by them"
    IN_PERSON_CODE = "in_person_code", "In person, after entering a one-time code e-mailed to the subject"


class DeliveryKind(models.TextChoices):
    LINK = "link", "Signing link"
    CODE = "code", "In-person signing code"


class HandoverVoidReason(models.TextChoices):
    REPLACED = "replaced", "A newer in-person signing was started"
    TOO_MANY_ATTEMPTS = "too_many_attempts", "Too many wrong codes"


class RevocationChannel(models.TextChoices):
    SUBJECT_LINK = "subject_link", "By the subject, on the consent link page"
    STAFF_RECORDED = "staff_recorded", "Received by other means, recorded by staff"


class ErasureTrigger(models.TextChoices):
    REVOCATION = "revocation", "Consent revoked"
    EXPIRY = "expiry", "Consent expired"
    RETENTION = "retention", "Retention period ended"
    ADMIN = "admin", "Erasure requested (tenant admin)"


class AssetKind(models.TextChoices):
    """Everything ever stored about a subject; each kind is erased with the subject key."""

    ENROLLMENT_PHOTO = "enrollment_photo", "Enrollment photo"
    REFERENCE_PHOTO = "reference_photo", "Reference photo"
    FACE_EMBEDDING = "face_embedding", "Face embedding (biometric)"
    CROP = "crop", "Face crop"
    MASK = "mask", "Mask"
    LATENT_CACHE = "latent_cache", "Cached latents"
    ADAPTER = "adapter", "Trained identity adapter"
    OUTPUT = "output", "Generated or edited output"
    PREVIEW = "preview", "Training preview"
    SOURCE_PHOTO = "source_photo", "Photo to edit"
    RELEASE = "release", "Released file (stamped output)"


class RetentionSchedule(WriteOnceModel):
    """A tenant's published retention schedule; each version is a new row.

    The version in force when a subject's data was first collected is linked to
    the subject (BIPA 15(a): a schedule published before collection).
    """

    version = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    years_after_last_interaction = models.PositiveSmallIntegerField(
        help_text="Biometric data is destroyed at the latest this many years after the subject's last "
        "interaction (BIPA: 3)."
    )
    days_after_purpose_satisfied = models.PositiveIntegerField(
        help_text="Days allowed after the purpose is satisfied (BIPA: 0; Texas CUBI: up to 365)."
    )
    statement = models.TextField(help_text="The plain-language schedule as published.")
    sha256 = models.CharField(max_length=64)
    published_at = models.DateTimeField()
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["tenant_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "version"], name="retentionschedule_unique_version")
        ]

    def __str__(self) -> str:
        return f"{self.title} (v{self.version})"


class ConsentTemplate(WriteOnceModel):
    """Tenant-authored consent text; a new wording is a new version, never an edit."""

    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    body = models.TextField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["tenant_id", "name", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name", "version"], name="consenttemplate_unique_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Subject(TenantOwnedModel):
    """A real person whose likeness a tenant wants to use. Status is derived from consent rows."""

    display_name = models.CharField(max_length=200)
    contact_email = models.EmailField(blank=True)
    internal_reference = models.CharField(max_length=100, blank=True)
    enrollment_photo = models.ForeignKey(
        "Asset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retention_schedule = models.ForeignKey(
        RetentionSchedule,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The schedule in force when this subject's data was first collected.",
    )
    last_interaction_at = models.DateTimeField()
    purpose_satisfied_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["tenant_id", "display_name", "id"]
        # The subject list's order, and the API's (id): a page is an index range, not a sort of the tenant.
        indexes = [
            models.Index(fields=["tenant", "display_name", "id"], name="subject_tenant_name_id"),
            models.Index(fields=["tenant", "id"], name="subject_tenant_id"),
        ]
        permissions = [
            ("upload_photos_subject", "Can upload enrollment and reference photos of a subject"),
            ("erase_subject", "Can erase a subject's data on request"),
            ("close_purpose_subject", "Can record that a subject's purpose is satisfied"),
            ("export_subject", "Can export a subject's consent history"),
        ]

    def __str__(self) -> str:
        return self.display_name


class SubjectUserObjectPermission(UserObjectPermissionBase):
    """Direct foreign-key object permissions (guardian): one user granted one subject."""

    content_object = models.ForeignKey(Subject, on_delete=models.CASCADE)


class SubjectGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Subject, on_delete=models.CASCADE)


class SubjectKey(TenantOwnedModel):
    """The subject's live data key, stored only wrapped by the tenant key.

    Erasure deletes this row before anything else; a later consent gets a new
    key with a new id, so files of the old key can never be opened again.
    """

    subject = models.OneToOneField(Subject, on_delete=models.PROTECT, related_name="data_key")
    key_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    wrapped_key = models.BinaryField()
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"key {self.key_id} of subject {self.subject_id}"


class Asset(TenantOwnedModel):
    """One stored file of a subject: ciphertext under the subject key, in the private storage."""

    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="assets")
    kind = models.CharField(max_length=32, choices=AssetKind.choices)
    key_id = models.UUIDField(help_text="The subject key the file is sealed with (see consent.crypto).")
    storage_name = models.CharField(max_length=500, unique=True)
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the stored ciphertext.")
    size_bytes = models.PositiveBigIntegerField(help_text="Size of the plaintext.")
    content_type = models.CharField(max_length=100)
    label = models.CharField(max_length=255, blank=True, help_text="The name the uploader gave the file.")
    source = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="derived"
    )
    quality = models.JSONField(default=dict, blank=True)
    retain_for_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="A shorter life than the subject's schedule, set by the creator."
    )
    retain_until = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["tenant_id", "subject_id", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"


class ConsentLink(WriteOnceModel):
    """The terms staff ask a subject to consent to, delivered as a signed, expiring link."""

    public_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="links")
    template = models.ForeignKey(ConsentTemplate, on_delete=models.PROTECT, related_name="+")
    purposes_offered = models.JSONField()
    intended_uses = models.TextField()
    channels = models.JSONField(default=list)
    territories = models.JSONField(default=list)
    valid_from = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    identity_verification = models.CharField(max_length=300)
    sign_by = models.DateTimeField(help_text="After this the link can no longer be used to sign.")
    token_sha256 = models.CharField(max_length=64)
    sent_to = models.EmailField(blank=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["tenant_id", "-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at", "-id"], name="consentlink_tenant_created")]

    def __str__(self) -> str:
        return f"consent link {self.public_id}"


class InPersonHandover(TenantOwnedModel):
    """Staff hand a device to the subject, who proves to be the addressee of the link with a one-time code.

    The code is e-mailed only to the link's address and stored only as a keyed
    hash; staff get a handover URL that shows nothing signable until the code is
    entered there, and then only in that browser session. The row moves on as the
    handover proceeds (wrong codes counted, verified, void), always under its row
    lock in consent.actions.handover; what the subject signed is the record.
    """

    public_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    link = models.ForeignKey(ConsentLink, on_delete=models.PROTECT, related_name="handovers")
    code_hmac = models.CharField(max_length=64)
    code_expires_at = models.DateTimeField()
    failed_attempts = models.PositiveSmallIntegerField(default=0)
    verified_at = models.DateTimeField(null=True, blank=True)
    session_sha256 = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the proof kept in the session that entered the code."
    )
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=32, choices=HandoverVoidReason.choices, blank=True)
    started_at = models.DateTimeField()
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["tenant_id", "link_id", "-started_at", "-id"]

    def __str__(self) -> str:
        return f"in-person signing #{self.pk} of link {self.link_id}"


class LinkDelivery(WriteOnceModel):
    """One attempt to e-mail a link or an in-person code to the subject: what, to whom, when, outcome."""

    link = models.ForeignKey(ConsentLink, on_delete=models.PROTECT, related_name="deliveries")
    kind = models.CharField(max_length=8, choices=DeliveryKind.choices)
    handover = models.ForeignKey(
        InPersonHandover, null=True, blank=True, on_delete=models.PROTECT, related_name="deliveries"
    )
    sent_to = models.EmailField()
    attempted_at = models.DateTimeField()
    ok = models.BooleanField(help_text="The mail server accepted the message.")
    error = models.CharField(
        max_length=100, blank=True, help_text="The class of the mail error (never its text, which may quote)."
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["tenant_id", "link_id", "attempted_at", "id"]
        verbose_name_plural = "link deliveries"

    def __str__(self) -> str:
        return f"{self.kind} delivery #{self.pk} of link {self.link_id}"


class ConsentRecord(WriteOnceModel):
    """What a subject signed, exactly, with the evidence of the signature and how the signer was verified."""

    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="records")
    link = models.OneToOneField(ConsentLink, on_delete=models.PROTECT, related_name="record")
    template = models.ForeignKey(ConsentTemplate, on_delete=models.PROTECT, related_name="+")
    template_version = models.PositiveIntegerField()
    template_sha256 = models.CharField(max_length=64)
    retention_schedule = models.ForeignKey(
        RetentionSchedule,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The schedule shown at signing.",
    )
    purposes = models.JSONField(help_text="The purposes the subject ticked, one by one.")
    intended_uses = models.TextField()
    channels = models.JSONField(default=list)
    territories = models.JSONField(default=list)
    representation = models.CharField(max_length=16, choices=Representation.choices)
    representation_detail = models.CharField(max_length=300, blank=True)
    identity_verification = models.CharField(max_length=300)
    valid_from = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    capture_channel = models.CharField(max_length=32, choices=CaptureChannel.choices)
    signer_full_name = models.CharField(max_length=200)
    signed_at = models.DateTimeField()
    signer_ip = models.GenericIPAddressField(null=True, blank=True)
    signer_user_agent = models.CharField(max_length=500, blank=True)
    link_token_sha256 = models.CharField(max_length=64)
    delivered_to = models.EmailField(
        blank=True, help_text="The address the link (in person: the code) was delivered to, as sent."
    )
    delivered_at = models.DateTimeField(
        null=True, blank=True, help_text="The last accepted delivery of the link (in person: of the code)."
    )
    code_verified_at = models.DateTimeField(
        null=True, blank=True, help_text="In person: when the code was entered."
    )
    handover = models.OneToOneField(
        InPersonHandover, null=True, blank=True, on_delete=models.PROTECT, related_name="record"
    )

    class Meta:
        ordering = ["tenant_id", "subject_id", "-signed_at", "-id"]
        # The API's list of the tenant's records, newest first.
        indexes = [models.Index(fields=["tenant", "-signed_at", "-id"], name="consentrecord_tenant_signed")]
        permissions = [("export_consentrecord", "Can export consent records")]

    def __str__(self) -> str:
        return f"consent #{self.pk} of subject {self.subject_id}"

    def grants(self, purpose: str) -> bool:
        return purpose in self.purposes


class ConsentRevocation(WriteOnceModel):
    """A withdrawal: a new row beside the record it withdraws, which stays untouched."""

    record = models.OneToOneField(ConsentRecord, on_delete=models.PROTECT, related_name="revocation")
    revoked_at = models.DateTimeField()
    channel = models.CharField(max_length=32, choices=RevocationChannel.choices)
    reason = models.TextField(blank=True)
    received_via = models.CharField(max_length=100, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["tenant_id", "-revoked_at"]

    def __str__(self) -> str:
        return f"revocation of consent #{self.record_id}"


class DeletionCertificate(TenantOwnedModel):
    """Proof of one erasure: what was destroyed, when, and that the key went first.

    Filled in as the erasure proceeds and closed (completed_at) when it ends; an
    open certificate is how an interrupted erasure is found and resumed. Scope
    "subject" destroys the key and everything; scope "assets" removes only the
    listed files whose own retention ended (the key stays).
    """

    class Scope(models.TextChoices):
        SUBJECT = "subject", "Everything of the subject (key destroyed)"
        ASSETS = "assets", "Files whose retention ended"

    public_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="deletion_certificates")
    scope = models.CharField(max_length=16, choices=Scope.choices)
    trigger = models.CharField(max_length=16, choices=ErasureTrigger.choices)
    reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField()
    planned_asset_ids = models.JSONField(default=list, help_text="Scope 'assets': the files to remove.")
    key_id = models.UUIDField(null=True, blank=True)
    key_destroyed_at = models.DateTimeField(null=True, blank=True)
    destroyed_counts = models.JSONField(default=dict, help_text="Files destroyed, by kind.")
    file_ids = models.JSONField(default=list, help_text="Ids of the asset rows whose files were destroyed.")
    stray_files_removed = models.PositiveIntegerField(default=0)
    cancelled_jobs = models.JSONField(default=list)
    withdrawn_outputs = models.JSONField(default=list)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["tenant_id", "-started_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-started_at", "-id"], name="certificate_tenant_started")]
        constraints = [
            models.UniqueConstraint(
                fields=["subject"],
                condition=models.Q(completed_at__isnull=True),
                name="deletioncertificate_one_open_per_subject",
            )
        ]
        permissions = [("export_deletioncertificate", "Can export deletion certificates")]

    def __str__(self) -> str:
        return f"deletion certificate {self.public_id}"

    @property
    def is_complete(self) -> bool:
        return self.completed_at is not None

    @property
    def files_destroyed(self) -> int:
        return sum(int(n) for n in self.destroyed_counts.values())


class ErasureRequest(TenantOwnedModel):
    """An erasure that staff started, held until a tenant admin confirms it (the two-person rule).

    Staff cannot destroy a subject's data on their own. A revocation they record
    stops every use at once (the gate reads the revocation row), but the key is
    destroyed only when an admin confirms, when the subject withdraws on their own
    link, or when the deadline passes unconfirmed: the law wants erasure without
    undue delay, so the rule may delay it, never prevent it. A consent in force
    again supersedes it. A "purpose satisfied" mark starts no retention clock until
    an admin confirms it, and an admin may decline it; no legal clock runs meanwhile,
    so it just stays pending (shown overdue) past its deadline.

    Every change happens under the subject's row lock (consent.locks).
    """

    class Trigger(models.TextChoices):
        REVOCATION = "revocation", "Consent revoked (recorded by staff)"
        PURPOSE_SATISFIED = "purpose_satisfied", "Purpose satisfied (marked by staff)"

    class State(models.TextChoices):
        PENDING = "pending", "Awaiting a tenant admin"
        CONFIRMED = "confirmed", "Confirmed by a tenant admin"
        DECLINED = "declined", "Declined by a tenant admin"
        SUPERSEDED = "superseded", "Superseded by a consent in force"
        DEADLINE_PASSED = "deadline_passed", "Erased at the deadline, unconfirmed"
        OVERTAKEN = "overtaken", "Overtaken by an erasure for another reason"

    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="erasure_requests")
    trigger = models.CharField(max_length=24, choices=Trigger.choices)
    revocation = models.OneToOneField(
        ConsentRevocation,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="erasure_request",
        help_text="Trigger 'revocation': the staff-recorded revocation that ended the last consent in force.",
    )
    state = models.CharField(max_length=24, choices=State.choices, default=State.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    deadline = models.DateTimeField(
        help_text="Revocation: erased unconfirmed at this moment. Purpose satisfied: shown overdue after it."
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True, help_text="Why an admin declined it.")
    certificate = models.ForeignKey(
        DeletionCertificate, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["tenant_id", "-requested_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-requested_at", "-id"], name="erasurereq_tenant_requested")
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["subject", "trigger"],
                condition=models.Q(state="pending"),
                name="erasurerequest_one_pending_per_trigger",
            )
        ]
        permissions = [("confirm_erasurerequest", "Can confirm or decline an erasure that staff started")]

    def __str__(self) -> str:
        return f"erasure request #{self.pk} ({self.get_trigger_display().lower()})"

    @property
    def is_pending(self) -> bool:
        return self.state == self.State.PENDING

    @property
    def is_overdue(self) -> bool:
        return self.is_pending and self.deadline <= timezone.now()
