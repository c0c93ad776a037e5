"""The edit itself: inversion, the masks "in advance", the blended target branch, the composite."""

from __future__ import annotations

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
from personalization.edit.conditioning import encode_prompts
from personalization.edit.inversion import decode_latent, invert
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
from personalization.edit.settings import EditResult, EditSettings, check, margin_px
from personalization.progress import ProgressCallback, StepCounter, StepProgress

# MasaCtrl reads the source's keys and values from layer 10 of SD 1.5's 16 self-attention
# layers on; on a UNet with another count the same fraction of the way in is used.
MASACTRL_LAYER_FRACTION = 10 / 16


def edit_image(
    pipe: Any,
    image: Image.Image,
    settings: EditSettings,
    progress: ProgressCallback[StepProgress] | None = None,
) -> EditResult:
    """Runs NIMA on one photo; see the package docstring for the method.

    `progress` gets every UNet step of the whole edit (phases invert, mask, edit); returning
    "stop" or raising progress.Cancelled cancels between steps (Cancelled propagates).
    """
    image = image.convert("RGB")
    check(settings, image)
    user = None if settings.user_mask is None else np.asarray(settings.user_mask).astype(bool)
    automatic_needed = user is None or settings.user_mask_mode == "constrain"
    # The window opens after the mask steps: those steps need not run twice.
    skip_ahead = automatic_needed and settings.blend_start >= settings.mask_steps
    mask_steps = settings.mask_steps if automatic_needed else 0
    counter = StepCounter(
        progress, settings.steps + mask_steps + settings.steps - (mask_steps if skip_ahead else 0)
    )
    inversion = invert(
        pipe,
        image,
        settings.source_prompt,
        settings.identifier,
        steps=settings.steps,
        resolution=settings.resolution,
        refinements=settings.inversion_refinements,
        on_step=counter.step,
    )
    latent_start = inversion.trajectory[0]
    latent_size = (latent_start.shape[-2], latent_start.shape[-1])
    conditioning = encode_prompts(
        pipe,
        [settings.source_prompt, settings.target_prompt],
        settings.negative_prompt,
        inversion.working_size,
    )
    target_positions = token_positions(pipe.tokenizer, settings.target_prompt, settings.identifier)
    guided = settings.guidance > 1.0
    target_cond_row = 1 if guided else 0
    source_row_index = 2 if guided else 1

    controller = AttentionController(latent_size=latent_size)
    if settings.masactrl:
        layers = count_self_attention_layers(pipe.unet)
        start_layer = (
            settings.masactrl_start_layer
            if settings.masactrl_start_layer is not None
            else round(layers * MASACTRL_LAYER_FRACTION)
        )
        targets = [0, 1] if guided else [0]
        controller.mutual = MutualSelfAttention(
            source_of=dict.fromkeys(targets, source_row_index),
            start_step=settings.masactrl_start_step,
            start_layer=start_layer,
        )

    subject: np.ndarray | None = None
    target: np.ndarray | None = None
    end = settings.steps if settings.blend_end is None else settings.blend_end
    common: dict[str, Any] = {
        "guidance": settings.guidance,
        "controller": controller,
        "source_row": settings.masactrl,
        "on_step": counter.step,
    }
    resume: tuple[int, torch.Tensor] | None = None
    with attention_control(pipe.unet, controller):
        if automatic_needed:
            controller.capture = {target_cond_row: target_positions}
            ahead = sample(
                pipe,
                inversion,
                conditioning,
                first=0,
                stop=settings.mask_steps,
                start_latent=latent_start,
                blend=None,
                phase="mask",
                **common,
            )
            controller.capture = None
            target_maps = {name: value[0] for name, value in controller.maps().items()}
            subject = attention_mask(inversion.subject_maps, latent_size, settings.mask_threshold)
            target = attention_mask(target_maps, latent_size, settings.mask_threshold)
            if skip_ahead:
                resume = (settings.mask_steps, ahead)
        union = None if subject is None or target is None else subject | target
        scale = image.width / inversion.working_size[1]
        weight = composite_weight(
            None if union is None else resize_mask(union, image.size),
            user,
            settings.user_mask_mode,
            dilate_px=margin_px(settings.dilate_px, inversion.working_size) * scale,
            feather_px=margin_px(settings.feather_px, inversion.working_size) * scale,
        )
        blend = Blend(latent_mask(weight, latent_size, latent_start.device), settings.blend_start, end)
        first, start_latent = resume if resume is not None else (0, latent_start)
        final = sample(
            pipe,
            inversion,
            conditioning,
            first=first,
            stop=settings.steps,
            start_latent=start_latent,
            blend=blend,
            phase="edit",
            **common,
        )
    decoded = decode_latent(pipe, final).resize(image.size, Image.Resampling.LANCZOS)
    output = composite(np.asarray(image), np.asarray(decoded), weight)
    return EditResult(
        image=Image.fromarray(output),
        region=weight_image(weight),
        subject_mask=None if subject is None else mask_image(subject, image.size),
        target_mask=None if target is None else mask_image(target, image.size),
        latent=final,
        settings=settings,
    )
