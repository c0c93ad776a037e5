"""How well a trained model keeps its subject: a few fixed-seed portraits scored against the references.

Right after training the registry generates a small fixed set (the same prompts and seeds for
every model, so versions compare) and scores each image with the product's one identity measure
(scoring.identity_score: every face against each reference face, the nearest one reported). An image with no
detectable face is reported as such, never as a distance: on the tiny random model nothing
looks like a face, and the evaluation says exactly that. The mean is over the images that show a
face, with how many did beside it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from personalization import faces
from personalization.artifacts import TrainedManifest
from personalization.cache import PipelineCache
from personalization.generate import GenerationSettings, generate, load_generator
from personalization.progress import ProgressCallback, StepProgress
from personalization.prompts import expand_prompt
from personalization.scoring import IdentityOutcome, ImageSource, identity_score, reference_embeddings

# A plain portrait and a close-up: the two views identity is judged on.
DEFAULT_PROMPTS = (
    "a photo of {identity} {class_word}",
    "a close-up portrait photo of {identity} {class_word}, looking at the camera",
)
DEFAULT_SEED = 1000  # each prompt uses seeds DEFAULT_SEED .. DEFAULT_SEED + per_prompt - 1
DEFAULT_PER_PROMPT = 2
DEFAULT_STEPS = 30


@dataclass(frozen=True)
class ScoredImage:
    """One generated image and its identity score (distances None when no face was found)."""

    prompt: str
    seed: int
    outcome: IdentityOutcome
    best_distance: float | None
    mean_distance: float | None
    image: Image.Image = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "seed": self.seed,
            "outcome": self.outcome,
            "best_distance": self.best_distance,
            "mean_distance": self.mean_distance,
        }


@dataclass(frozen=True)
class Evaluation:
    images: list[ScoredImage]
    threshold: float
    references: int
    parameters: dict[str, Any]

    @property
    def with_face(self) -> list[ScoredImage]:
        return [image for image in self.images if image.outcome != "no_face"]

    @property
    def mean_distance(self) -> float | None:
        """Mean of each image's best distance to the references, over the images with a face."""
        found = [image.best_distance for image in self.with_face if image.best_distance is not None]
        return statistics.fmean(found) if found else None

    @property
    def matches(self) -> int:
        return sum(image.outcome == "match" for image in self.images)

    def summary(self) -> str:
        total = len(self.images)
        if not self.with_face:
            return f"no face found in any of the {total} generated images"
        return (
            f"{len(self.with_face)} of {total} images show a face; mean identity distance "
            f"{self.mean_distance:.3f} (match under {self.threshold}); {self.matches} match"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for a registry row): per image, the aggregate and the parameters used."""
        return {
            "images": [image.to_dict() for image in self.images],
            "faces_found": len(self.with_face),
            "matches": self.matches,
            "mean_distance": self.mean_distance,
            "threshold": self.threshold,
            "references": self.references,
            "summary": self.summary(),
            "parameters": self.parameters,
        }


def score_images(
    generated: Sequence[tuple[str, int, Image.Image]],
    references: Sequence[ImageSource],
    *,
    threshold: float = faces.SAME_PERSON_THRESHOLD,
    parameters: dict[str, Any] | None = None,
) -> Evaluation:
    """Scores (prompt, seed, image) triples against the reference photos (each must show a face)."""
    embeddings = reference_embeddings(references)
    scored = []
    for prompt, seed, image in generated:
        score = identity_score(image, embeddings, threshold=threshold)
        scored.append(
            ScoredImage(prompt, seed, score.outcome, score.best_distance, score.mean_distance, image)
        )
    return Evaluation(scored, threshold, len(embeddings), dict(parameters or {}))


def evaluate(
    pipe: Any,
    manifest: TrainedManifest,
    references: Sequence[ImageSource],
    *,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    seed: int = DEFAULT_SEED,
    per_prompt: int = DEFAULT_PER_PROMPT,
    steps: int = DEFAULT_STEPS,
    threshold: float = faces.SAME_PERSON_THRESHOLD,
    progress: ProgressCallback[StepProgress] | None = None,
) -> Evaluation:
    """Generates `per_prompt` images per prompt (seeds `seed`..) with the model's recommended LoRA
    scales, and scores them; `progress` counts the steps of all the generations ("stop" cancels)."""
    # References first: a faceless reference is an error before any generation is paid for.
    reference_embeddings(references)
    generated: list[tuple[str, int, Image.Image]] = []
    relay = _Relay(progress, calls=len(prompts))
    settings = GenerationSettings(
        count=per_prompt,
        seed=seed,
        steps=steps,
        unet_scale=manifest.default_scales["unet"],
        text_scale=manifest.default_scales["text"],
    )
    for template in prompts:
        result = generate(pipe, manifest, replace(settings, prompt=template), progress=relay)
        relay.calls_done += 1
        generated += [(result.prompt, s, image) for s, image in zip(result.seeds, result.images, strict=True)]
    parameters = {
        "prompts": [expand_prompt(template, manifest.tokens, manifest.class_word) for template in prompts],
        "seeds": list(range(seed, seed + per_prompt)),
        "steps": steps,
        "guidance": settings.guidance,
        "scheduler": settings.scheduler,
        "unet_scale": settings.unet_scale,
        "text_scale": settings.text_scale,
    }
    return score_images(generated, references, threshold=threshold, parameters=parameters)


class _Relay:
    """One count over the evaluation's generation calls (they all take the same number of steps)."""

    def __init__(self, progress: ProgressCallback[StepProgress] | None, *, calls: int) -> None:
        self.progress = progress
        self.calls = calls
        self.calls_done = 0
        self.started = time.monotonic()

    def __call__(self, event: StepProgress) -> str | None:
        if self.progress is None:
            return None
        done = self.calls_done * event.total + event.step
        total = self.calls * event.total
        elapsed = time.monotonic() - self.started
        return self.progress(StepProgress(done, total, "evaluate", elapsed / done * (total - done), elapsed))


def evaluate_folder(
    model_dir: str | Path,
    references: Sequence[ImageSource],
    *,
    cache: PipelineCache | None = None,
    base_model: str | Path | None = None,
    device: str | None = None,
    **options: Any,
) -> Evaluation:
    """`evaluate` on a trained folder: through the worker's pipeline cache when given, else a fresh load."""
    if cache is not None:
        with cache.trained(model_dir, base_model=base_model, device=device) as (pipe, manifest):
            return evaluate(pipe, manifest, references, **options)
    pipe, manifest = load_generator(model_dir, base_model=base_model, device=device)
    return evaluate(pipe, manifest, references, **options)
