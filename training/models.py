"""Jobs: the one base every kind of GPU work shares (training, generation, editing).

A `Job` row is the whole life of one piece of work: its state machine, its live
progress, its cancellation and its metering. Each kind adds its own parameters
in a child table (multi-table inheritance: `training.TrainingJob`,
`editing.GenerationJob`, `editing.EditJob`), so one id space serves the job
page (`/jobs/<id>/`), its socket (`/ws/jobs/<id>/`), the fair queue, the
reaper and the usage meter, whatever the kind.

State changes only through training.jobs (conditional updates: a late worker
can never overwrite "cancelled" with "succeeded"). The order of states:

    queued --(dispatched to the broker)--> running --> succeeded | failed | cancelled
       \\-----------------------------------------------> cancelled | failed
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from django.conf import settings
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from tenancy.models import TenantOwnedModel
from tenancy.scoping import TenantScopedManager


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class Job(TenantOwnedModel):
    """One piece of GPU work on one subject's likeness, of any kind."""

    kind = models.CharField(max_length=32, help_text="training | generation | edit (training.jobs.kinds).")
    subject = models.ForeignKey("consent.Subject", on_delete=models.PROTECT, related_name="jobs")
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    consent_record = models.ForeignKey(
        "consent.ConsentRecord",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The record that covered the job's purpose when it was queued.",
    )
    created_at = models.DateTimeField()
    # The fair queue hands a job to the broker only when a slot is free (training.jobs.dispatch);
    # the token names that hand-over, so a stale or duplicated broker message is recognised.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    dispatch_token = models.UUIDField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker started it.")
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancel_reason = models.CharField(max_length=200, blank=True)
    # Live progress: the latest snapshot, written at a throttled rate and published after commit.
    phase = models.CharField(max_length=32, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    losses = models.JSONField(default=dict, blank=True)
    learning_rates = models.JSONField(default=dict, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    loss_history = models.JSONField(
        default=list, blank=True, help_text="[[step, total loss], ...], thinned to a bounded length."
    )
    notices = models.JSONField(default=list, blank=True)
    # How it ended, for a person: never a traceback (that goes to the worker's log).
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    # Where and at what cost it ran: the base of usage metering.
    worker_host = models.CharField(max_length=255, blank=True)
    device = models.CharField(max_length=128, blank=True)
    wall_seconds = models.FloatField(default=0.0)
    device_seconds = models.FloatField(default=0.0)
    peak_memory_bytes = models.PositiveBigIntegerField(default=0)
    steps_done = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "-created_at", "-id"], name="job_tenant_created"),
            models.Index(fields=["tenant", "status"], name="job_tenant_status"),
            models.Index(fields=["status", "dispatched_at"], name="job_status_dispatched"),
        ]
        permissions = [
            ("cancel_job", "Can cancel a job"),
            ("view_usage", "Can read the tenant's usage metering"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job #{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def progress_fraction(self) -> float:
        if self.status == JobStatus.SUCCEEDED:
            return 1.0
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    def specific(self) -> Any:
        """The kind's own row (a TrainingJob, a GenerationJob...) with this base attached.

        Each kind's child model redeclares `objects` and `dangerously_unscoped`: Django does not
        inherit managers from a concrete parent.
        """
        from training.jobs.kinds import job_kind

        return job_kind(self.kind).model.dangerously_unscoped.get(pk=self.pk)


class JobPreview(TenantOwnedModel):
    """An image a running job showed of its progress (a training preview), stored as a subject file."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="previews")
    step = models.PositiveIntegerField()
    # A preview shows the subject's likeness: a consent.Asset, erased with the subject key.
    asset = models.ForeignKey(
        "consent.Asset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["job", "step", "id"]


class ReferenceSetStatus(models.TextChoices):
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    ERASED = "erased", "Erased"  # the subject's data was erased: files gone, derived rows cleared


class ReferenceSet(TenantOwnedModel):
    """A subject's reference photos prepared for training (the core's `prepare`): one version.

    Built for a base model (at its native resolution) from the exact reference
    photos named in `photo_ids`; when the photos change, the set is stale and a
    new version is built. A version that a training job used is never changed:
    a caption edit then makes a new version (training.actions.references).
    Crops and masks are subject files (consent.Asset, encrypted with the subject
    key); erasure destroys them and the rows stay as the history.
    """

    subject = models.ForeignKey("consent.Subject", on_delete=models.PROTECT, related_name="reference_sets")
    version = models.PositiveIntegerField()
    status = models.CharField(
        max_length=16, choices=ReferenceSetStatus.choices, default=ReferenceSetStatus.BUILDING
    )
    error_message = models.TextField(blank=True)
    base_model = models.CharField(max_length=500, help_text="The base model it is prepared for.")
    resolution = models.PositiveIntegerField(null=True, blank=True, help_text="Crop side, px (the base's).")
    token = models.CharField(max_length=32, blank=True)
    class_word = models.CharField(max_length=32, blank=True)
    photo_ids = models.JSONField(
        default=list, help_text="The reference photos (asset ids) it was built from."
    )
    rejected = models.JSONField(default=list, blank=True, help_text="[{photo, reason}] prepare refused.")
    prepare_options = models.JSONField(default=dict, blank=True, help_text="prepare's manifest settings.")
    dataset_hash = models.CharField(max_length=64, blank=True)
    derived_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The version whose caption edit made this one.",
    )
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    build_started_at = models.DateTimeField(null=True, blank=True)
    built_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["subject", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["subject", "version"], name="referenceset_unique_version"),
        ]

    def __str__(self) -> str:
        return f"reference set v{self.version} of subject {self.subject_id}"


class ReferenceItem(TenantOwnedModel):
    """One prepared photo of a reference set: its crop and mask (subject files), caption and quality."""

    reference_set = models.ForeignKey(ReferenceSet, on_delete=models.CASCADE, related_name="items")
    name = models.CharField(max_length=16, help_text="prepare's name for it (0001, 0002...).")
    photo = models.ForeignKey(
        "consent.Asset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    crop = models.ForeignKey(
        "consent.Asset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    face_mask = models.ForeignKey(
        "consent.Asset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    caption = models.TextField()
    crop_sha256 = models.CharField(max_length=64, help_text="SHA-256 of the crop's plaintext (dataset hash).")
    face_mask_sha256 = models.CharField(max_length=64)
    entry = models.JSONField(default=dict, help_text="prepare's manifest entry: face box, landmarks, pose.")
    quality = models.JSONField(default=dict, help_text="prepare's quality report for the photo.")
    warnings = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["reference_set", "name"]
        constraints = [
            models.UniqueConstraint(fields=["reference_set", "name"], name="referenceitem_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} of {self.reference_set}"


class StyleSet(TenantOwnedModel):
    """A tenant's style photos for the multiconcept method, one version (a new upload, a new version).

    Style photos are the look (setting, light, clothing) to learn, not a person:
    a photo showing a face large enough to be a likeness is refused at upload,
    and the set is outside the consent gate. Stored in the private storage,
    not encrypted with any subject key (docs/compliance.md, "Style sets").
    """

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["tenant_id", "name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name", "version"], name="styleset_unique_version"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class StylePhoto(TenantOwnedModel):
    style_set = models.ForeignKey(StyleSet, on_delete=models.CASCADE, related_name="photos")
    storage_name = models.CharField(max_length=500, unique=True)
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the stored file.")
    size_bytes = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=100)
    extension = models.CharField(max_length=8)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    largest_face_px = models.PositiveIntegerField(default=0, help_text="0: no face found.")

    class Meta:
        ordering = ["style_set", "id"]

    def __str__(self) -> str:
        return f"style photo #{self.pk} of {self.style_set}"


TRAINING_KIND = "training"  # the job kind's name (training.kind)


class TrainingMethod(models.TextChoices):
    IDENTITY = "identity", "Identity (LIPE)"
    MULTICONCEPT = "multiconcept", "Identity and style (MagiCapture)"


class TrainingJob(Job):
    """A training run: which data (pinned), which base model, which settings (as asked and as resolved)."""

    method = models.CharField(max_length=16, choices=TrainingMethod.choices)
    base_model = models.CharField(max_length=500)
    preset = models.CharField(max_length=16)
    overrides = models.JSONField(default=dict, blank=True, help_text="As requested (validated).")
    resolved_settings = models.JSONField(default=dict, help_text="Every training setting the run used.")
    reference_set = models.ForeignKey(ReferenceSet, on_delete=models.PROTECT, related_name="training_jobs")
    style_set = models.ForeignKey(
        StyleSet, null=True, blank=True, on_delete=models.PROTECT, related_name="training_jobs"
    )

    # Managers of a concrete parent are not inherited (Django): the fail-closed one again.
    objects: ClassVar[TenantScopedManager[Self]] = TenantScopedManager()
    dangerously_unscoped: ClassVar[models.Manager[Self]] = models.Manager()

    def __str__(self) -> str:
        return f"training job #{self.pk}"


class IdentityModel(TenantOwnedModel):
    """One trained version of a subject's identity model: what generation and editing load.

    The artifact (the core's trained folder, packed by training.artifacts) is a
    subject file, encrypted with the subject key: erasure destroys it with the
    rest, and the row stays as the history (`artifact` empty). At most one
    version per subject is active; promoting another is an audited action.
    """

    subject = models.ForeignKey("consent.Subject", on_delete=models.PROTECT, related_name="identity_models")
    version = models.PositiveIntegerField()
    job = models.ForeignKey(
        Job,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The run that made it.",
    )
    method = models.CharField(max_length=32, help_text="identity | multiconcept")
    base_model = models.CharField(max_length=500, help_text="Hub id or folder the run trained on.")
    model_kind = models.CharField(max_length=16, help_text="sd15 | sdxl")
    manifest = models.JSONField(default=dict, help_text="The trained folder's manifest.json.")
    artifact = models.ForeignKey(
        "consent.Asset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    evaluation = models.JSONField(
        default=dict, blank=True, help_text="Identity distance of fixed-seed generations to the references."
    )
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    activated_at = models.DateTimeField(null=True, blank=True)
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["subject", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["subject", "version"], name="identitymodel_unique_version"),
            models.UniqueConstraint(
                fields=["subject"], condition=models.Q(is_active=True), name="identitymodel_one_active"
            ),
        ]
        permissions = [("activate_identitymodel", "Can choose a subject's active model version")]

    def __str__(self) -> str:
        return f"{self.subject} v{self.version}"

    @property
    def is_usable(self) -> bool:
        """False once erasure destroyed its files (the row stays as history)."""
        return self.artifact_id is not None


class IdentityModelUserObjectPermission(UserObjectPermissionBase):
    """Direct foreign-key object permissions (guardian), as for subjects."""

    content_object = models.ForeignKey(IdentityModel, on_delete=models.CASCADE)


class IdentityModelGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(IdentityModel, on_delete=models.CASCADE)
