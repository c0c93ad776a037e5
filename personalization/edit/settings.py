"""What an edit is asked to do, what it refuses, and what it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from PIL import Image

from personalization.edit.framing import Crop

# Called with the phase after each UNet step (StepCounter.step: it reports and may cancel).
OnStep = Callable[[str], None]
# Called with the phase, the sampling step just taken and the target branch's latent after it
# (blended when the step is inside the blend window): what a preview or a check of the blend reads.
LatentHook = Callable[[str, int, torch.Tensor], None]
UserMaskMode = Literal["replace", "constrain"]


class EditError(ValueError):
    """The edit cannot run as asked (prompt without the identifier, bad mask, bad window)."""


# Default dilation and feathering of the edit region, as a fraction of the working side:
# 12 px at SD 1.5's 512 px, and proportionally less at smaller working sizes.
DEFAULT_MARGIN_FRACTION = 12 / 512


def margin_px(value: float | None, working_size: tuple[int, int]) -> float:
    return value if value is not None else DEFAULT_MARGIN_FRACTION * max(working_size)


@dataclass
class EditSettings:
    """One edit. Steps are sampling steps (0 = the noisiest).

    `blend_start`/`blend_end` bound the steps after which the latents are blended
    (default: all of them, as in the paper). The masks are read over the first
    `mask_steps` steps of the target branch; when blending starts before that, those
    steps are run once ahead to get the mask ("in advance") and then again with it.
    Dilation and feathering are in pixels of the model's working resolution; left unset, each
    is DEFAULT_MARGIN_FRACTION of the working side (12 px at 512 px), so the region keeps the
    same proportions at any resolution.
    """

    source_prompt: str
    target_prompt: str
    identifier: str
    steps: int = 50
    guidance: float = 7.5
    negative_prompt: str = ""
    mask_steps: int = 5
    mask_threshold: float = 0.5
    blend_start: int = 0
    blend_end: int | None = None
    dilate_px: float | None = None
    feather_px: float | None = None
    masactrl: bool = False
    masactrl_start_step: int = 4
    masactrl_start_layer: int | None = None
    user_mask: np.ndarray | None = None
    user_mask_mode: UserMaskMode = "constrain"
    resolution: int | None = None
    inversion_refinements: int = 0


@dataclass
class EditResult:
    """The edited photo (input size) and every mask that shaped it, at the input's size.

    `region` is the feathered composite weight as 8-bit: 0 exactly where the output's
    pixels are the input's, 255 where they are the edit's. `subject_mask` (M_s) and
    `target_mask` (M_t) are None when a user mask replaced the automatic one. `crop` is the
    part of the photo the edit ran on and its scale (`crop.downscaled`: the region was larger
    than the working size, so it was edited below the photo's resolution); `latent` is the
    crop's final latent, and `latent_mask` (1, 1, h, w) its latent cells where the edit's latent
    is kept (1) rather than the source trajectory's (0) inside the blend window.
    """

    image: Image.Image
    region: Image.Image
    subject_mask: Image.Image | None
    target_mask: Image.Image | None
    latent: torch.Tensor
    latent_mask: torch.Tensor
    crop: Crop
    settings: EditSettings = field(repr=False)


def check(settings: EditSettings, image: Image.Image) -> None:
    """Refuses, with the reason, an edit that cannot run as asked, before any model call."""
    for name in ("source_prompt", "target_prompt"):
        if settings.identifier not in getattr(settings, name):
            raise EditError(
                f"the {name.replace('_', ' ')} must name the subject with its identifier "
                f"{settings.identifier!r}: {getattr(settings, name)!r}"
            )
    if settings.steps < 1:
        raise EditError("steps must be at least 1")
    if not 1 <= settings.mask_steps <= settings.steps:
        raise EditError(f"mask_steps must be between 1 and steps ({settings.steps})")
    end = settings.steps if settings.blend_end is None else settings.blend_end
    if not 0 <= settings.blend_start <= end <= settings.steps:
        raise EditError(
            f"the blend window must satisfy 0 <= start <= end <= steps, got {settings.blend_start}..{end}"
        )
    if not 0.0 < settings.mask_threshold <= 1.0:
        raise EditError("mask_threshold must be in (0, 1]")
    if (settings.dilate_px or 0) < 0 or (settings.feather_px or 0) < 0:
        raise EditError("dilation and feathering must not be negative")
    if settings.user_mask is not None:
        mask = settings.user_mask
        if mask.ndim != 2 or mask.shape != (image.height, image.width):
            raise EditError(
                f"the user mask must be {image.width}x{image.height} like the photo, got shape {mask.shape}"
            )
        if settings.user_mask_mode not in ("replace", "constrain"):
            raise EditError("user_mask_mode must be 'replace' or 'constrain'")
