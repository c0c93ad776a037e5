"""What a GPU worker runs for a generation or an edit job (training.jobs.runner calls these).

Each kind decrypts its inputs into the job's scratch folder, runs the core
(personalization.generate / personalization.edit) on the worker's kept
pipeline (training.jobs.pipelines), reports every sampling step through the job
context (which stops it between steps on a cancel or a withdrawn consent),
scores each image with the core's scorer, and writes its outputs in one
transaction at the end: a cancelled or failed job leaves no output and no file.

torch and the core's model code are imported inside the functions: the web
process imports this module (the kinds are registered in EditingConfig.ready())
and must not load them.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from PIL import Image

from audit.actions import record as audit
from consent import vault
from consent.models import Asset, AssetKind, Subject
from consent.storage import files_removed_on_rollback
from editing import parameters
from editing.models import EditJob, GenerationJob, MaskMode, Output, OutputKind
from training.artifacts import ArtifactError, unpack_to
from training.jobs import JobContext, JobError
from training.jobs.pipelines import LoadedModel, trained_pipeline
from training.models import Job

if TYPE_CHECKING:
    import numpy as np

    from personalization.progress import StepProgress

logger = logging.getLogger(__name__)

FACE_MODELS_MISSING = (
    "This worker cannot describe the photo (its face models are missing), so it has no source prompt to "
    "start from: give one, or the operator can find why in the worker's log under job {job_id}."
)
UNUSABLE_MODEL = (
    "This GPU worker cannot use the model version (its base model is missing here, or its files do not "
    "fit the base). The operator can find why in the GPU worker's log under job {job_id}."
)
OUT_OF_MEMORY = (
    "The GPU ran out of memory for this job. Ask for fewer images or a smaller size, or ask the operator "
    "to check what else runs on the GPU worker."
)


class StepReporter:
    """One step count for the whole job: the core call's steps, then the job's own (scoring an image).

    The core reports each step of its call with `step` and `total` counting the
    whole call (personalization.progress.StepProgress); the job's bar goes on
    from there, with an ETA from the pace so far.
    """

    def __init__(self, context: JobContext, after: int) -> None:
        self.context = context
        self.after = after
        self.done = 0
        self.total = after
        self.started = time.monotonic()

    def __call__(self, event: StepProgress) -> None:
        self.done, self.total = event.step, event.total + self.after
        self._report(event.phase)

    def advance(self, phase: str) -> None:
        self.done += 1
        self.total = max(self.total, self.done)
        self._report(phase)

    def _report(self, phase: str) -> None:
        pace = (time.monotonic() - self.started) / self.done
        self.context.report(
            step=self.done, total=self.total, phase=phase, eta_seconds=pace * (self.total - self.done)
        )


@dataclass
class Made:
    """One image the job made, not stored yet."""

    image: Image.Image
    prompt: str
    seed: int | None
    parameters: dict[str, Any]
    identity: dict[str, Any]
    background: dict[str, Any] | None = None
    masks: dict[str, Image.Image | None] = field(default_factory=dict)


@contextmanager
def _core_refusals(job: GenerationJob | EditJob) -> Iterator[None]:
    """The core's refusals as the job's reason, in words for the person who asked.

    A refused prompt or setting is theirs to fix and its message says how; a base model or model
    files this worker cannot use are the operator's, whose log has the details (server paths stay
    out of what the tenant reads).
    """
    import torch

    from personalization.artifacts import ArtifactError as CoreArtifactError
    from personalization.edit import EditError
    from personalization.generate import GenerationError
    from personalization.models import ModelLoadError
    from personalization.prompts import PromptError

    try:
        yield
    except torch.OutOfMemoryError:
        raise JobError(OUT_OF_MEMORY, code="out_of_memory") from None
    except (ModelLoadError, CoreArtifactError, ArtifactError):
        logger.warning("job %s cannot use its model version %s", job.pk, job.identity_model_id, exc_info=True)
        raise JobError(UNUSABLE_MODEL.format(job_id=job.pk), code="model_unusable") from None
    except (GenerationError, EditError, PromptError) as error:
        raise JobError(f"The model refused the request: {error}.", code="invalid_parameters") from None


def _decrypted(asset: Asset | None, what: str) -> bytes:
    if asset is None:
        raise JobError(f"The {what} was erased; the job cannot run without it.", code="input_erased")
    try:
        return vault.read_asset(asset)
    except vault.KeyDestroyedError:
        raise JobError(
            f"The {what} was erased; the job cannot run without it.", code="input_erased"
        ) from None
    except vault.AssetIntegrityError as error:
        raise JobError(error.message, code="asset_integrity") from None


@contextmanager
def _model(job: GenerationJob | EditJob, context: JobContext) -> Iterator[LoadedModel]:
    """The job's model version, unpacked into its scratch folder and applied to the worker's pipeline."""
    model = job.identity_model
    folder = unpack_to(_decrypted(model.artifact, "model version's file"), context.scratch / "model")
    context.report(step=0, total=1, phase="load")
    with trained_pipeline(model.base_model, folder) as loaded:
        type(job).dangerously_unscoped.filter(pk=job.pk).update(
            pipeline_reused=loaded.reused, pipeline_load_seconds=round(loaded.load_seconds, 3)
        )
        context.device = loaded.device
        yield loaded


def _reference_embeddings(subject: Subject) -> list[np.ndarray]:
    """The face embeddings of the subject's enrollment and reference photos (stored when admitted)."""
    stored = subject.assets.filter(
        kind=AssetKind.FACE_EMBEDDING,
        source__kind__in=(AssetKind.ENROLLMENT_PHOTO, AssetKind.REFERENCE_PHOTO),
    ).order_by("id")
    return [vault.embedding_from_bytes(vault.read_asset(asset)) for asset in stored]


def _identity(image: Image.Image, references: list[np.ndarray]) -> dict[str, Any]:
    """Distance to the subject's faces; "no_face" is an outcome of its own (the tiny model draws none)."""
    import numpy as np

    from personalization.scoring import as_dict, identity_score

    if not references:
        return {"outcome": "unavailable", "reason": "the subject has no reference photo to compare with"}
    return as_dict(identity_score(np.asarray(image.convert("RGB")), references))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _write_outputs(
    job: GenerationJob | EditJob, context: JobContext, kind: OutputKind, made: list[Made]
) -> None:
    """Every output with its files, in one transaction: all of them, or (cancelled, failed) none.

    Each file goes through the job context, which checks the job may still go on
    and that consent still covers it before it writes.
    """
    encoded = [
        (item, _png(item.image), {name: _png(mask) for name, mask in item.masks.items() if mask is not None})
        for item in made
    ]
    source_photo = job.source_photo if isinstance(job, EditJob) else None
    now = timezone.now()
    with files_removed_on_rollback() as stored:

        def store_png(asset_kind: AssetKind, data: bytes, label: str, source: Asset | None) -> Asset:
            asset = context.store_file(
                kind=asset_kind,
                data=data,
                content_type="image/png",
                extension="png",
                label=label,
                source=source,
            )
            stored.append(asset.storage_name)
            return asset

        ids = []
        for item, image_png, mask_pngs in encoded:
            image = store_png(AssetKind.OUTPUT, image_png, f"{kind.label} of job {job.pk}", source_photo)
            masks = {
                name: store_png(AssetKind.MASK, data, f"{name} mask of job {job.pk}", image)
                for name, data in mask_pngs.items()
            }
            background = item.background or {}
            psnr = background.get("psnr")
            output = Output.objects.for_tenant(job.tenant).create(
                subject=job.subject,
                job=job,
                identity_model=job.identity_model,
                kind=kind,
                status_changed_at=now,
                image=image,
                source_photo=source_photo,
                region_mask=masks.get("region"),
                subject_mask=masks.get("subject"),
                target_mask=masks.get("target"),
                prompt=item.prompt,
                seed=item.seed,
                parameters=item.parameters,
                identity_outcome=item.identity["outcome"],
                identity_distance=item.identity.get("best_distance"),
                background_psnr=psnr if isinstance(psnr, float) else None,
                background_ssim=background.get("ssim"),
                scores={"identity": item.identity, **({"background": background} if item.background else {})},
                created_at=now,
            )
            ids.append(output.pk)
        audit(
            tenant=job.tenant,
            action="outputs.created",
            target_type=Job._meta.label_lower,  # the job's trail (training.jobs names the base row)
            target_id=job.pk,
            payload={"kind": kind.value, "subject_id": job.subject_id, "output_ids": ids},
        )


# --- generation -------------------------------------------------------------------------------------------
def run_generation(job: GenerationJob, context: JobContext) -> None:
    """`count` images from the job's prompt (seed + i each), scored against the subject's photos."""
    from personalization.generate import GenerationSettings, HiresSettings, generate

    settings = GenerationSettings(
        prompt=job.prompt,
        style="style" if job.style else None,
        negative_prompt=job.negative_prompt,
        count=job.count,
        seed=job.seed,
        steps=job.steps,
        guidance=job.guidance,
        scheduler=job.scheduler,
        width=job.width,
        height=job.height,
        hires=None if job.hires is None else HiresSettings(**job.hires),
    )
    reporter = StepReporter(context, after=job.count)
    with _core_refusals(job), _model(job, context) as loaded:
        result = generate(loaded.pipe, loaded.manifest, settings, progress=reporter)
    references = _reference_embeddings(job.subject)
    common = {
        "model_version": job.identity_model.version,
        "prompt_template": job.prompt,
        "prompt_preset": job.prompt_preset,
        "negative_prompt": result.negative_prompt,
        "style": job.style,
        "preset": job.preset,
        "hires": job.hires,
        "steps": job.steps,
        "guidance": job.guidance,
        "scheduler": settings.scheduler,
        "unet_scale": settings.unet_scale,
        "text_scale": settings.text_scale,
        "count": job.count,
    }
    made = []
    for index, (image, seed) in enumerate(zip(result.images, result.seeds, strict=True)):
        identity = _identity(image, references)
        reporter.advance("score")
        parameters_ = {**common, "index": index, "width": image.width, "height": image.height}
        made.append(
            Made(image=image, prompt=result.prompt, seed=seed, parameters=parameters_, identity=identity)
        )
    _write_outputs(job, context, OutputKind.GENERATION, made)


# --- edit ---------------------------------------------------------------------------------------------------
def _photo_and_mask(job: EditJob) -> tuple[Image.Image, np.ndarray | None]:
    """The photo to edit (at most EDIT_MAX_SIDE on its longer side) and the painted mask at its size."""
    import numpy as np

    photo = Image.open(io.BytesIO(_decrypted(job.source_photo, "photo to edit"))).convert("RGB")
    photo.thumbnail((parameters.EDIT_MAX_SIDE, parameters.EDIT_MAX_SIDE), Image.Resampling.LANCZOS)
    if job.user_mask_id is None:
        return photo, None
    painted = Image.open(io.BytesIO(_decrypted(job.user_mask, "painted mask"))).convert("L")
    painted = painted.resize(photo.size, Image.Resampling.NEAREST)
    return photo, np.asarray(painted) > 127


def _background(photo: Image.Image, edited: Image.Image, region: Image.Image) -> dict[str, Any]:
    """PSNR and SSIM outside the edit region (the core reports them); unavailable with the reason."""
    import numpy as np

    from personalization.scoring import ScoringError, as_dict, background_score, region_from_mask_image

    try:
        score = background_score(np.asarray(photo), np.asarray(edited), region_from_mask_image(region))
    except ScoringError as error:
        return {"available": False, "reason": str(error)}
    return {"available": True, **as_dict(score)}


def run_edit(job: EditJob, context: JobContext) -> None:
    """LIPE's non-rigid edit of the photo; the photo's own pixels are kept outside the edit region."""
    from personalization.edit import EditSettings, edit_image

    manifest = job.identity_model.manifest
    photo, user_mask = _photo_and_mask(job)
    source, target, negative = parameters.edit_prompts(
        manifest,
        source_prompt=job.source_prompt or _photo_prompt(job, photo),
        preset=job.preset,
        target_prompt=job.target_prompt,
        negative_prompt=job.negative_prompt,
    )
    settings = EditSettings(
        source_prompt=source,
        target_prompt=target,
        identifier=manifest["tokens"]["identity"],
        steps=job.steps,
        guidance=job.guidance,
        negative_prompt=negative,
        mask_steps=min(parameters.MASK_STEPS, job.steps),
        user_mask=user_mask,
        user_mask_mode="replace" if job.mask_mode == MaskMode.REPLACE else "constrain",
    )
    reporter = StepReporter(context, after=1)
    with _core_refusals(job), _model(job, context) as loaded:
        result = edit_image(loaded.pipe, photo, settings, progress=reporter)
    identity = _identity(result.image, _reference_embeddings(job.subject))
    background = _background(photo, result.image, result.region)
    reporter.advance("score")
    recorded = {
        key: value
        for key, value in dataclasses.asdict(settings).items()
        if key not in ("user_mask", "identifier")
    }
    made = Made(
        image=result.image,
        prompt=target,
        seed=None,
        parameters={
            **recorded,
            "source_prompt_from": "request" if job.source_prompt else "photo caption",
            "model_version": job.identity_model.version,
            "preset": job.preset,
            "user_mask": job.user_mask_id,
            "photo_size": list(photo.size),
            "region_fraction": round(_share(result.region), 6),
            # The window of the photo the edit ran on; a scale below 1 means it was edited downscaled.
            "crop": list(result.crop.box),
            "crop_scale": round(result.crop.scale, 6),
        },
        identity=identity,
        background=background,
        masks={"region": result.region, "subject": result.subject_mask, "target": result.target_mask},
    )
    _write_outputs(job, context, OutputKind.EDIT, [made])


def _photo_prompt(job: EditJob, photo: Image.Image) -> str:
    """The photo's own caption as the source prompt, when the request gave none (LIPE inverts the
    photo with a prompt that describes its pose and expression; see personalization.captions)."""
    import numpy as np

    from personalization.captions import photo_prompt
    from personalization.faces import FaceModelsUnavailableError

    try:
        return photo_prompt(np.asarray(photo))
    except FaceModelsUnavailableError:
        logger.warning("job %s: this worker cannot read faces", job.pk, exc_info=True)
        raise JobError(FACE_MODELS_MISSING.format(job_id=job.pk), code="face_models_unavailable") from None


def _share(region: Image.Image) -> float:
    """The share of the photo's pixels the edit could change (non-zero composite weight)."""
    histogram = region.histogram()
    return 1.0 - histogram[0] / max(1, math.prod(region.size))
