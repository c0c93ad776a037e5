"""The edit itself: inversion, the masks "in advance", the blended target branch, the composite.

The masks are read on the whole photo at the working size, where they have always been read:
that fixes the region in photo pixels. The edit then runs on a crop around the region
(`framing.choose_crop`), inverted again at the working size unless the crop is the whole photo,
and its result is composited back into that crop with the same weight, so the region keeps the
photo's resolution wherever it fits the working size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from personalization.attention import (
    AttentionController,
    MutualSelfAttention,
    attention_control,
    count_self_attention_layers,
    token_positions,
)
from personalization.edit.conditioning import Conditioning, encode_prompts
from personalization.edit.framing import Crop, choose_crop, working_size
from personalization.edit.inversion import Inversion, decode_latent, invert
from personalization.edit.masks import (
    attention_mask,
    composite,
    composite_weight,
    latent_mask,
    mask_image,
    resize_mask,
    weight_image,
)
from personalization.edit.sampling import Blend, sample
from personalization.edit.settings import EditResult, EditSettings, LatentHook, OnStep, check, margin_px
from personalization.progress import ProgressCallback, StepCounter, StepProgress

# MasaCtrl reads the source's keys and values from layer 10 of SD 1.5's 16 self-attention
# layers on; on a UNet with another count the same fraction of the way in is used.
MASACTRL_LAYER_FRACTION = 10 / 16


@dataclass
class _Picture:
    """The whole photo or the crop around the region, inverted at its working size, with the
    edit's prompt conditioning and attention controller at that size."""

    inversion: Inversion
    conditioning: Conditioning
    controller: AttentionController

    @property
    def latent_size(self) -> tuple[int, int]:
        latent = self.inversion.trajectory[0]
        return latent.shape[-2], latent.shape[-1]


def _inverted(pipe: Any, picture: Image.Image, settings: EditSettings, on_step: OnStep) -> _Picture:
    inversion = invert(
        pipe,
        picture,
        settings.source_prompt,
        settings.identifier,
        steps=settings.steps,
        resolution=settings.resolution,
        refinements=settings.inversion_refinements,
        on_step=on_step,
    )
    conditioning = encode_prompts(
        pipe,
        [settings.source_prompt, settings.target_prompt],
        settings.negative_prompt,
        inversion.working_size,
    )
    latent = inversion.trajectory[0]
    controller = AttentionController(latent_size=(latent.shape[-2], latent.shape[-1]))
    if settings.masactrl:
        layers = count_self_attention_layers(pipe.unet)
        start_layer = (
            settings.masactrl_start_layer
            if settings.masactrl_start_layer is not None
            else round(layers * MASACTRL_LAYER_FRACTION)
        )
        guided = settings.guidance > 1.0
        controller.mutual = MutualSelfAttention(
            source_of=dict.fromkeys([0, 1] if guided else [0], 2 if guided else 1),
            start_step=settings.masactrl_start_step,
            start_layer=start_layer,
        )
    return _Picture(inversion, conditioning, controller)


def _sample(
    pipe: Any,
    picture: _Picture,
    settings: EditSettings,
    *,
    first: int,
    stop: int,
    start_latent: torch.Tensor,
    blend: Blend | None,
    on_step: OnStep,
    phase: str,
    on_latent: LatentHook | None,
) -> torch.Tensor:
    with attention_control(pipe.unet, picture.controller):
        return sample(
            pipe,
            picture.inversion,
            picture.conditioning,
            guidance=settings.guidance,
            first=first,
            stop=stop,
            start_latent=start_latent,
            blend=blend,
            controller=picture.controller,
            source_row=settings.masactrl,
            on_step=on_step,
            phase=phase,
            on_latent=on_latent,
        )


def _masks_in_advance(
    pipe: Any, picture: _Picture, settings: EditSettings, on_step: OnStep, on_latent: LatentHook | None
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """M_s (read during the inversion) and M_t (read over the target branch's first mask steps);
    also that branch's latent after those steps, from which an edit whose blend window opens
    only then can go on instead of running them twice."""
    target_row = 1 if settings.guidance > 1.0 else 0
    positions = token_positions(pipe.tokenizer, settings.target_prompt, settings.identifier)
    picture.controller.capture = {target_row: positions}
    ahead = _sample(
        pipe,
        picture,
        settings,
        first=0,
        stop=settings.mask_steps,
        start_latent=picture.inversion.trajectory[0],
        blend=None,
        on_step=on_step,
        phase="mask",
        on_latent=on_latent,
    )
    picture.controller.capture = None
    target_maps = {name: value[0] for name, value in picture.controller.maps().items()}
    subject = attention_mask(picture.inversion.subject_maps, picture.latent_size, settings.mask_threshold)
    target = attention_mask(target_maps, picture.latent_size, settings.mask_threshold)
    return subject, target, ahead


def edit_image(
    pipe: Any,
    image: Image.Image,
    settings: EditSettings,
    progress: ProgressCallback[StepProgress] | None = None,
    on_latent: LatentHook | None = None,
) -> EditResult:
    """Runs NIMA on one photo; see the package docstring for the method.

    `progress` gets every UNet step of the whole edit (phases invert, mask, edit; a second invert,
    of the crop around the region, when the crop is not the whole photo); returning "stop"
    or raising progress.Cancelled cancels between steps (Cancelled propagates). `on_latent` sees
    the target branch's latent after each of its steps (phases mask and edit).
    """
    image = image.convert("RGB")
    check(settings, image)
    user = None if settings.user_mask is None else np.asarray(settings.user_mask).astype(bool)
    automatic_needed = user is None or settings.user_mask_mode == "constrain"
    # The blend window opens after the mask steps: those steps need not run twice.
    skip_ahead = automatic_needed and settings.blend_start >= settings.mask_steps
    mask_steps = settings.mask_steps if automatic_needed else 0
    counter = StepCounter(
        progress, settings.steps + mask_steps + settings.steps - (mask_steps if skip_ahead else 0)
    )
    whole: _Picture | None = None
    subject: np.ndarray | None = None
    target: np.ndarray | None = None
    ahead: torch.Tensor | None = None
    if automatic_needed:
        whole = _inverted(pipe, image, settings, counter.step)
        subject, target, ahead = _masks_in_advance(pipe, whole, settings, counter.step, on_latent)
    # Dilation and feathering are in pixels of the whole photo's working size, as the region is.
    size = working_size(pipe, image.size, settings.resolution)
    scale = image.width / size[1]
    weight = composite_weight(
        None if subject is None or target is None else resize_mask(subject | target, image.size),
        user,
        settings.user_mask_mode,
        dilate_px=margin_px(settings.dilate_px, size) * scale,
        feather_px=margin_px(settings.feather_px, size) * scale,
    )
    crop = choose_crop(pipe, weight, settings.resolution)
    if whole is not None and crop.covers(image.size):
        picture = whole
    else:
        counter.set_total(counter.done + 2 * settings.steps)
        picture = _inverted(pipe, image.crop(crop.box), settings, counter.step)
    first, start_latent = 0, picture.inversion.trajectory[0]
    if picture is whole and skip_ahead and ahead is not None:
        first, start_latent = settings.mask_steps, ahead
    end = settings.steps if settings.blend_end is None else settings.blend_end
    cells = latent_mask(crop.cut(weight), picture.latent_size, start_latent.device)
    blend = Blend(cells, settings.blend_start, end)
    final = _sample(
        pipe,
        picture,
        settings,
        first=first,
        stop=settings.steps,
        start_latent=start_latent,
        blend=blend,
        on_step=counter.step,
        phase="edit",
        on_latent=on_latent,
    )
    return EditResult(
        image=Image.fromarray(_pasted(np.asarray(image), decode_latent(pipe, final), weight, crop)),
        region=weight_image(weight),
        subject_mask=None if subject is None else mask_image(subject, image.size),
        target_mask=None if target is None else mask_image(target, image.size),
        latent=final,
        latent_mask=cells,
        crop=crop,
        settings=settings,
    )


def _pasted(photo: np.ndarray, decoded: Image.Image, weight: np.ndarray, crop: Crop) -> np.ndarray:
    """The photo with the crop's edit composited into the crop; at scale 1 the decoded pixels are
    used as they are (PIL's resize to the same size is a copy)."""
    edited = np.asarray(decoded.resize(crop.size, Image.Resampling.LANCZOS))
    output = photo.copy()
    crop.cut(output)[...] = composite(crop.cut(photo), edited, crop.cut(weight))
    return output
