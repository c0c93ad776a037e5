"""Generation and edit jobs (kinds of training.models.Job) and the outputs they produce.

Both kinds are child tables of the one job base, so queueing, the fair queue,
cancellation, the live page and socket and metering are the base's
(docs/jobs.md); these rows hold only what a kind was asked. An `Output` is one
image a job made, with everything needed to judge and reproduce it: the prompt
as the model read it, seed and parameters, the masks of an edit, and its scores.
Every file (image, masks, an uploaded photo) is a consent.Asset of the subject,
encrypted with their key, so erasure destroys it; the foreign keys are SET_NULL
and the rows stay as the history, `withdrawn`.
"""

from __future__ import annotations

from typing import ClassVar, Self

from django.conf import settings
from django.db import models

from consent.models import Asset
from tenancy.models import TenantOwnedModel
from tenancy.scoping import TenantScopedManager
from training.models import Job


class OutputStatus(models.TextChoices):
    """Where an output is in review (editing.review). Jobs produce only `pending_review`; staff approve or
    reject it once; the subject vetoes a pending or approved one from their portal; `withdrawn` is
    erasure's. Approved is the only status under which an image may be used."""

    PENDING_REVIEW = "pending_review", "Pending review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"
    VETOED = "vetoed", "Vetoed"


class OutputKind(models.TextChoices):
    GENERATION = "generation", "Generated image"
    EDIT = "edit", "Edited photo"


class MaskMode(models.TextChoices):
    """How a painted mask meets the automatic one (personalization.edit.composite_weight)."""

    CONSTRAIN = "constrain", "Limit the automatic region to the painted area"
    REPLACE = "replace", "Edit exactly the painted area"


def subject_file(help_text: str = "") -> models.ForeignKey[Asset | None]:
    """A reference to a file of the subject: emptied when erasure deletes it, the row staying as history."""
    return models.ForeignKey(
        "consent.Asset",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=help_text,
    )


class IdentityModelJob(models.Model):
    """What both kinds share: the model version they run, and whether the worker had its base loaded."""

    identity_model = models.ForeignKey(
        "training.IdentityModel", on_delete=models.PROTECT, related_name="+", help_text="The version used."
    )
    guidance = models.FloatField()
    steps = models.PositiveSmallIntegerField()
    negative_prompt = models.CharField(max_length=1000, blank=True)
    # Filled in by the worker: a base pipeline kept loaded between jobs is a job that starts faster.
    pipeline_reused = models.BooleanField(
        null=True, blank=True, help_text="The worker had the base model loaded already (None until it ran)."
    )
    pipeline_load_seconds = models.FloatField(default=0.0)

    class Meta:
        abstract = True


class GenerationJob(Job, IdentityModelJob):  # noqa: DJ008 (Job.__str__ names it)
    """Images of the subject from a prompt (MagiCapture inference), alone or in the model's style."""

    prompt = models.CharField(
        max_length=1000, help_text="As asked: {identity}, {class_word} and {style} become the model's tokens."
    )
    prompt_preset = models.CharField(max_length=32, blank=True, help_text="editing.parameters.PROMPT_PRESETS")
    style = models.BooleanField(default=False, help_text="In the trained style of a multiconcept model.")
    preset = models.CharField(
        max_length=16, default="standard", help_text="The core's generation preset: quick, standard, max."
    )
    scheduler = models.CharField(
        max_length=32, default="default", help_text="personalization.presets.SCHEDULERS"
    )
    hires = models.JSONField(
        null=True, blank=True, help_text="SD 1.5's second pass (scale, strength, mode) of the max preset."
    )
    count = models.PositiveSmallIntegerField()
    seed = models.PositiveBigIntegerField(help_text="Image i uses seed + i.")
    width = models.PositiveSmallIntegerField()
    height = models.PositiveSmallIntegerField()

    # Managers of a concrete parent are not inherited: the base's fail-closed scoping, again.
    objects: ClassVar[TenantScopedManager[Self]] = TenantScopedManager()
    dangerously_unscoped: ClassVar[models.Manager[Self]] = models.Manager()


class EditJob(Job, IdentityModelJob):  # noqa: DJ008 (Job.__str__ names it)
    """A non-rigid edit of one photo of the subject (LIPE's NIMA): expression, gaze, pose."""

    source_photo = subject_file("The photo to edit (enrollment, reference or uploaded for editing).")
    user_mask = subject_file("A painted mask (white: may change).")
    mask_mode = models.CharField(max_length=16, choices=MaskMode.choices, default=MaskMode.CONSTRAIN)
    preset = models.CharField(max_length=32, blank=True, help_text="personalization.prompts.PRESETS")
    source_prompt = models.CharField(max_length=1000)
    target_prompt = models.CharField(max_length=1000, blank=True, help_text="Empty when a preset writes it.")

    objects: ClassVar[TenantScopedManager[Self]] = TenantScopedManager()
    dangerously_unscoped: ClassVar[models.Manager[Self]] = models.Manager()


class Output(TenantOwnedModel):
    """One image a generation or edit job made, with its prompt, parameters, masks and scores."""

    subject = models.ForeignKey("consent.Subject", on_delete=models.PROTECT, related_name="outputs")
    job = models.ForeignKey(Job, on_delete=models.PROTECT, related_name="outputs")
    identity_model = models.ForeignKey("training.IdentityModel", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=OutputKind.choices)
    status = models.CharField(
        max_length=32, choices=OutputStatus.choices, default=OutputStatus.PENDING_REVIEW
    )
    status_changed_at = models.DateTimeField()
    # The files: consent.Assets of the subject, destroyed with their key (the row stays as history).
    image = subject_file()
    source_photo = subject_file()
    region_mask = subject_file("An edit's composite weight: 0 where every pixel is the photo's.")
    subject_mask = subject_file("Where the photo's subject is (the identifier's attention).")
    target_mask = subject_file("Where the edited subject will be.")
    prompt = models.TextField(help_text="As the model read it (tokens written out); an edit's target prompt.")
    seed = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="None for an edit (DDIM is exact)."
    )
    parameters = models.JSONField(default=dict, help_text="Every setting the image was made with.")
    # Scores (personalization.scoring): identity against the subject's reference photos, and for an
    # edit how well the photo was kept outside the edit region. The full reports are in `scores`.
    identity_outcome = models.CharField(
        max_length=16, blank=True, help_text="match | mismatch | no_face | unavailable"
    )
    identity_distance = models.FloatField(
        null=True, blank=True, help_text="Best distance; None without a face."
    )
    background_psnr = models.FloatField(
        null=True, blank=True, help_text="Outside the edit region; None when identical there (infinite)."
    )
    background_ssim = models.FloatField(null=True, blank=True)
    scores = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    # The review (editing.review): who decided, when and why; the subject's veto after it.
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.CharField(
        max_length=500, blank=True, help_text="Required for a rejection, optional for an approval."
    )
    vetoed_at = models.DateTimeField(null=True, blank=True, help_text="When the subject vetoed it.")
    veto_reason = models.CharField(max_length=500, blank=True, help_text="The subject's, optional.")

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("review_output", "Can approve or reject outputs")]
        indexes = [
            models.Index(fields=["tenant", "job"], name="output_tenant_job"),
            models.Index(fields=["tenant", "subject", "status"], name="output_tenant_subject_status"),
            # The approvals queue (newest first) and its decided lists (latest decision first), then the
            # API's list of every output: each page an index range in the order the list shows.
            models.Index(
                fields=["tenant", "status", "-created_at", "-id"], name="output_tenant_status_created"
            ),
            models.Index(
                fields=["tenant", "status", "-status_changed_at", "-id"], name="output_tenant_status_decided"
            ),
            models.Index(fields=["tenant", "-created_at", "-id"], name="output_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"


# The release registry lives in its own subpackage; importing it here registers its models with the app.
from editing.releases.models import Release, ReleaseDownload  # noqa: E402, F401
