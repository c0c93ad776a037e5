"""The training kind: what a GPU worker does with a TrainingJob (registered in TrainingConfig.ready()).

1. Unpack the pinned reference set (crops and masks decrypted, the pinned
   captions) into the job's scratch folder in the layout the core reads; for
   multiconcept, prepare the style set's photos (`prepare --style`) beside it at
   the same resolution.
2. Train with the core, reporting every step through the job context; a stop
   (a cancel, or consent withdrawn) is caught inside the core's progress
   callback, which answers "stop" so the core ends cleanly, and raised again
   after.
3. Evaluate with the core (personalization.evaluation): a few fixed-seed
   portraits from the trained folder applied to the worker's cached base
   pipeline as generation applies it, each scored against the subject's
   reference photos.
4. Store the trained folder (one packed subject file) and record the version,
   in one transaction: a cancelled or failed job leaves neither.

torch and the core are imported here, inside the worker process only: the web
process imports this module (the kind is registered in every process) but never
runs it.
"""

from __future__ import annotations

import gc
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consent import vault
from consent.models import AssetKind, Purpose
from consent.storage import files_removed_on_rollback
from training.actions.registry import create_identity_model
from training.actions.styles import StylePhotoDamagedError, read_style_photo
from training.artifacts import pack_folder
from training.jobs import JobContext, JobError, JobKind, JobStopped, register_job_kind
from training.models import TRAINING_KIND, ReferenceItem, ReferenceSet, StyleSet, TrainingJob, TrainingMethod

if TYPE_CHECKING:
    from PIL import Image


def _inside(folder: Path, relative: str) -> Path:
    """A path of the prepared layout, which must stay inside `folder` (it comes from a stored entry)."""
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise JobError("The reference set is damaged (a file name leaves its folder): build a new set.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def unpack_reference_set(reference_set: ReferenceSet, folder: Path) -> list[ReferenceItem]:
    """Decrypt the set into `folder` as `prepare` wrote it, with the set's own captions."""
    from personalization.dataset import MANIFEST_NAME

    items = list(reference_set.items.select_related("crop", "face_mask").order_by("name"))
    if not items or any(item.crop is None or item.face_mask is None for item in items):
        raise JobError(
            "The reference set's files were erased (retention or erasure): build a new reference set.",
            code="reference_set_erased",
        )
    folder.mkdir(parents=True)
    for item in items:
        assert item.crop is not None and item.face_mask is not None
        _inside(folder, item.entry["image"]).write_bytes(vault.read_asset(item.crop))
        _inside(folder, item.entry["face_mask"]).write_bytes(vault.read_asset(item.face_mask))
        _inside(folder, item.entry["caption"]).write_text(item.caption + "\n", encoding="utf-8")
    manifest = {**reference_set.prepare_options, "images": [item.entry for item in items], "rejected": []}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return items


def prepare_style_set(style_set: StyleSet, scratch: Path, resolution: int) -> Path:
    """The style photos prepared (`prepare --style`) at the run's resolution, in the scratch folder."""
    from personalization.prepare import PrepareError, PrepareOptions, prepare

    photos = scratch / "style-photos"
    photos.mkdir(parents=True)
    for index, photo in enumerate(style_set.photos.order_by("id"), start=1):
        try:
            data = read_style_photo(photo)
        except StylePhotoDamagedError as error:
            raise JobError(f"The style set cannot be used: {error}.", code="style_set_damaged") from None
        (photos / f"{index:04d}.{photo.extension}").write_bytes(data)
    out = scratch / "style"
    try:
        prepare(photos, out, PrepareOptions(resolution=resolution, style=True, force=True))
    except PrepareError as error:
        raise JobError(_without(str(error), scratch), code="style_set") from None
    return out


def _without(message: str, scratch: Path) -> str:
    """A core message for a person: the worker's scratch paths taken out."""
    return message.replace(f"{scratch}/", "").replace(str(scratch), "the job's folder")


def _reference_photos(items: list[ReferenceItem]) -> list[Image.Image]:
    """The set's reference photos as uploaded (decrypted in memory): what the evaluation scores against."""
    from PIL import Image

    return [Image.open(io.BytesIO(vault.read_asset(item.photo))) for item in items if item.photo is not None]


def evaluate(
    job: TrainingJob, trained: Path, items: list[ReferenceItem], context: JobContext
) -> dict[str, Any]:
    """The core's evaluation of the trained folder (personalization.evaluation): fixed-seed portraits,
    each scored for identity distance to the reference photos.

    The folder is applied to the worker's cached base pipeline exactly as generation applies it
    (training.jobs.pipelines), which also proves the version loads, and leaves the base loaded for the
    subject's first generation. Progress keeps the job's step count (the training's) and shows
    the evaluation's ETA; a stop asked for meanwhile stops it too.
    """
    from personalization.evaluation import evaluate as evaluate_model
    from personalization.progress import Cancelled, StepProgress
    from personalization.scoring import ScoringError
    from training.jobs.pipelines import trained_pipeline

    references = _reference_photos(items)
    if not references:
        return {"measured": False, "summary": "The reference photos were erased: identity was not measured."}
    steps = context.steps_done
    stops: list[JobStopped] = []

    def on_progress(event: StepProgress) -> str | None:
        try:
            context.report(step=steps, total=steps, phase="evaluating", eta_seconds=event.eta_seconds)
        except JobStopped as stop:
            stops.append(stop)
            return "stop"
        return None

    try:
        with trained_pipeline(job.base_model, trained) as loaded:
            evaluation = evaluate_model(loaded.pipe, loaded.manifest, references, progress=on_progress)
    except Cancelled:
        raise stops[0] from None
    except ScoringError as error:
        return {"measured": False, "summary": f"Identity was not measured: {error}."}
    return {"measured": bool(evaluation.with_face), **evaluation.to_dict()}


def execute(job: TrainingJob, context: JobContext) -> None:
    """Run one training job inside a GPU worker (see the module docstring for the steps)."""
    from personalization.artifacts import MANIFEST_NAME
    from personalization.models import ModelLoadError
    from personalization.training import TrainConfig, Trainer, TrainingError, TrainProgress
    from training.jobs.pipelines import device_name

    scratch = context.scratch
    reference_set = job.reference_set
    try:
        items = unpack_reference_set(reference_set, scratch / "reference")
    except vault.AssetIntegrityError as error:
        raise JobError(error.message, code="asset_integrity") from None
    settings = dict(job.resolved_settings)
    style_images = None
    if job.method == TrainingMethod.MULTICONCEPT:
        if job.style_set is None:
            raise JobError("The multiconcept method needs a style set.", code="style_set")
        style_images = prepare_style_set(job.style_set, scratch, settings["resolution"])
    known = set(TrainConfig.__dataclass_fields__)
    out = scratch / "trained"
    stops: list[JobStopped] = []

    def on_progress(event: TrainProgress) -> str | None:
        try:
            context.report(
                step=event.step,
                total=event.total,
                phase=event.phase,
                losses=event.losses,
                learning_rates=event.learning_rates,
                eta_seconds=event.eta_seconds,
                notices=list(event.notices),
                preview=event.preview,
            )
        except JobStopped as stop:
            stops.append(stop)
            return "stop"  # the core ends cleanly after this step; the stop is raised again below
        return None

    try:
        config = TrainConfig(
            method=job.method,  # type: ignore[arg-type]
            base_model=job.base_model,
            images=scratch / "reference",
            out=out,
            style_images=style_images,
            **{key: value for key, value in settings.items() if key in known},
        )
        trainer = Trainer(config, on_progress)
        context.device = device_name()  # the worker's device, named as every kind names it
        trainer.run()
    except (ModelLoadError, TrainingError) as error:
        raise JobError(_without(str(error), scratch), code="training_refused") from None
    if stops:
        raise stops[0]
    del trainer  # the training pipeline's memory goes before the evaluation loads its own
    gc.collect()
    evaluation = evaluate(job, out, items, context)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    packed = pack_folder(out)
    with files_removed_on_rollback() as stored:
        artifact = context.store_file(
            kind=AssetKind.ADAPTER,
            data=packed,
            content_type="application/gzip",
            extension="tar.gz",
            label=f"identity model of training job {job.pk}",
        )
        stored.append(artifact.storage_name)
        create_identity_model(job=job, artifact=artifact, manifest=manifest, evaluation=evaluation)


def register() -> None:
    register_job_kind(
        JobKind(
            name=TRAINING_KIND,
            label="Training",
            model=TrainingJob,
            purpose=Purpose.TRAIN_IDENTITY,
            execute=execute,
        )
    )
