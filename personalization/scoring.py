"""Scores for generated and edited images: identity, background preservation, text alignment.

Identity uses the product's one definition of "the same person" (faces.py's 128-d
embedding and its threshold), so an output passes review by the same rule that
admitted the reference photos. Background preservation is measured only outside the
edit region, where an edit promises to leave the photo alone. The CLIP score needs
a CLIP model; without one configured it is reported as unavailable, never guessed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from personalization import faces

ImageSource = str | Path | Image.Image | np.ndarray
IdentityOutcome = Literal["match", "mismatch", "no_face"]


class ScoringError(ValueError):
    """The inputs cannot be scored (no reference face, mismatched sizes, empty background)."""


def _rgb(source: ImageSource) -> np.ndarray:
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
            raise ScoringError(
                f"expected an RGB uint8 array of shape (h, w, 3), got {source.dtype} {source.shape}"
            )
        return source
    return faces.load_rgb(source)


# ---------------------------------------------------------------------------------------
# Identity


@dataclass(frozen=True)
class IdentityScore:
    """Distances from the output's face to each reference face (lower: more alike).

    `outcome` is "no_face" when the output shows no detectable face: a portrait that
    lost its face is a failure of its own kind, not a large distance.
    """

    outcome: IdentityOutcome
    best_distance: float | None
    mean_distance: float | None
    threshold: float
    references: int
    faces_in_output: int

    @property
    def passed(self) -> bool:
        return self.outcome == "match"


def reference_embeddings(references: Sequence[ImageSource]) -> list[np.ndarray]:
    """Embeddings of the largest face of each reference photo; a photo without one is an error.

    Reference photos were checked for exactly one face on upload, so a faceless one
    here means the wrong files were passed: scoring against fewer would mislead.
    """
    if not references:
        raise ScoringError("identity scoring needs at least one reference photo")
    embeddings = []
    for index, reference in enumerate(references):
        rgb = _rgb(reference)
        found = faces.detect_faces(rgb)
        if not found:
            name = reference if isinstance(reference, str | Path) else f"reference #{index + 1}"
            raise ScoringError(f"no face found in {name}")
        embeddings.append(faces.face_embedding(rgb, found[0]))
    return embeddings


def identity_score(
    image: ImageSource,
    references: Sequence[np.ndarray],
    *,
    threshold: float = faces.SAME_PERSON_THRESHOLD,
) -> IdentityScore:
    """Scores every face in `image` against the reference embeddings and reports the best one.

    The subject need not be the largest face (a group photo, someone in the foreground): the
    face nearest to the references is the one the score is about, and its distances are the
    ones reported. `best_distance` under `threshold` (dlib's calibrated operating point by
    default) is a match, as in faces.py.
    """
    if not references:
        raise ScoringError("identity scoring needs at least one reference embedding")
    rgb = _rgb(image)
    found = faces.detect_faces(rgb)
    if not found:
        return IdentityScore("no_face", None, None, threshold, len(references), 0)
    per_face = [
        [faces.embedding_distance(faces.face_embedding(rgb, face), reference) for reference in references]
        for face in found
    ]
    distances = min(per_face, key=min)
    best = min(distances)
    return IdentityScore(
        outcome="match" if best < threshold else "mismatch",
        best_distance=best,
        mean_distance=float(np.mean(distances)),
        threshold=threshold,
        references=len(references),
        faces_in_output=len(found),
    )


# ---------------------------------------------------------------------------------------
# Background preservation


@dataclass(frozen=True)
class BackgroundScore:
    """How well an edit kept the photo outside its region (region: pixels the edit may change).

    `psnr` is infinite when every outside pixel is identical; SSIM is 1.0 then.
    """

    outside_pixels: int
    identical_pixels: int
    psnr: float
    ssim: float

    @property
    def identical_fraction(self) -> float:
        return self.identical_pixels / self.outside_pixels


def background_score(original: ImageSource, edited: ImageSource, region: np.ndarray) -> BackgroundScore:
    """Compares `edited` with `original` where `region` is False.

    SSIM looks at 7x7 windows, so windows at the region's border would see edited
    pixels inside it: the edited image's region is filled with the original's pixels
    first, which keeps the measure about the outside only.
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    before, after = _rgb(original), _rgb(edited)
    if before.shape != after.shape:
        raise ScoringError(
            f"the edited image {after.shape[:2]} and the original {before.shape[:2]} differ in size"
        )
    inside = np.asarray(region, dtype=bool)
    if inside.shape != before.shape[:2]:
        raise ScoringError(f"the region mask {inside.shape} does not match the image {before.shape[:2]}")
    outside = ~inside
    count = int(outside.sum())
    if count == 0:
        raise ScoringError("the region covers the whole image: there is no background to compare")
    identical = int((before == after).all(axis=2)[outside].sum())
    psnr = (
        math.inf
        if identical == count
        else float(peak_signal_noise_ratio(before[outside], after[outside], data_range=255))
    )
    filled = np.where(inside[..., None], before, after)
    side = min(before.shape[:2])
    window = min(7, side if side % 2 == 1 else side - 1)
    if window < 3:
        raise ScoringError("the image is too small for SSIM (needs at least 3x3 pixels)")
    _, ssim_map = structural_similarity(
        before, filled, channel_axis=2, data_range=255, full=True, win_size=window
    )
    ssim = float(np.asarray(ssim_map).mean(axis=2)[outside].mean())
    return BackgroundScore(outside_pixels=count, identical_pixels=identical, psnr=psnr, ssim=ssim)


def region_from_mask_image(mask: ImageSource) -> np.ndarray:
    """The edit region from a saved region image (as `edit` writes it): any non-zero pixel."""
    if isinstance(mask, np.ndarray):
        gray = mask if mask.ndim == 2 else mask.max(axis=2)
    else:
        image = mask if isinstance(mask, Image.Image) else Image.open(mask)
        gray = np.asarray(image.convert("L"))
    return np.asarray(gray > 0)


# ---------------------------------------------------------------------------------------
# Text-image alignment


@dataclass(frozen=True)
class ClipScore:
    """CLIP score (100 x cosine of image and text embeddings, floored at 0; Hessel et al. 2021).

    `cosine` is the raw cosine the score is made from. Both are None and `available`
    False when no CLIP model is configured.
    """

    available: bool
    value: float | None
    model: str | None
    reason: str | None = None
    cosine: float | None = None


@functools.cache
def _clip(model_path: str) -> tuple[Any, Any]:
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(model_path, local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(model_path, local_files_only=True)
    return model, processor


def clip_score(image: ImageSource, text: str, model_path: str | Path | None) -> ClipScore:
    """Text-image alignment with the CLIP model at `model_path`, or "unavailable" without one."""
    if model_path is None or str(model_path) == "":
        return ClipScore(False, None, None, "no CLIP model configured")
    path = Path(model_path)
    if not path.is_dir():
        raise ScoringError(f"the CLIP model folder {path} does not exist")
    import torch

    model, processor = _clip(str(path.resolve()))
    picture = Image.fromarray(_rgb(image))
    inputs = processor(text=[text], images=picture, return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        outputs = model(**inputs)
    cosine = float((outputs.image_embeds * outputs.text_embeds).sum(dim=-1)[0])
    return ClipScore(True, 100.0 * max(cosine, 0.0), str(path), cosine=cosine)


def as_dict(score: IdentityScore | BackgroundScore | ClipScore) -> dict[str, Any]:
    """A JSON-ready view (infinite PSNR becomes the string "inf", which JSON cannot hold as a number)."""
    data = asdict(score)
    if isinstance(score, IdentityScore):
        data["passed"] = score.passed
    if isinstance(score, BackgroundScore):
        data["identical_fraction"] = score.identical_fraction
        if math.isinf(score.psnr):
            data["psnr"] = "inf"
    return data
