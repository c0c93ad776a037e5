"""LIPE stage 2 (NIMA): non-rigid editing of a photo of a trained subject.

The photo is DDIM-inverted with the source prompt and its latent trajectory kept.
The identifier token's cross-attention, read along that trajectory, marks where the
subject is (M_s); a short run of the target branch marks where the edited subject
will be (M_t, "in advance"). Their union, dilated, is the edit region: at every step
of a configurable window the target's latent is kept inside it and the source
trajectory's latent outside it, so the background follows the photo. MasaCtrl's
mutual self-attention can be switched on to keep the subject's appearance while its
pose changes. Finally the decoded result is composited over the untouched photo in
pixel space with a feathered mask: outside the feathered region every pixel is the
input's, exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch.nn import functional as nnf

from personalization.attention import (
    AttentionController,
    MutualSelfAttention,
    attention_control,
    count_self_attention_layers,
    token_positions,
)
from personalization.progress import ProgressCallback, StepCounter, StepProgress

# Called with the phase after each UNet step (StepCounter.step: it reports and may cancel).
OnStep = Callable[[str], None]
UserMaskMode = Literal["replace", "constrain"]

# MasaCtrl reads the source's keys and values from layer 10 of SD 1.5's 16 self-attention
# layers on; on a UNet with another count the same fraction of the way in is used.
MASACTRL_LAYER_FRACTION = 10 / 16


class EditError(ValueError):
    """The edit cannot run as asked (prompt without the identifier, bad mask, bad window)."""


# ---------------------------------------------------------------------------------------
# Settings and result


# Default dilation and feathering of the edit region, as a fraction of the working side:
# 12 px at SD 1.5's 512 px, and proportionally less at smaller working sizes.
DEFAULT_MARGIN_FRACTION = 12 / 512


def _margin_px(value: float | None, working_size: tuple[int, int]) -> float:
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
    `target_mask` (M_t) are None when a user mask replaced the automatic one.
    """

    image: Image.Image
    region: Image.Image
    subject_mask: Image.Image | None
    target_mask: Image.Image | None
    latent: torch.Tensor
    settings: EditSettings = field(repr=False)


# ---------------------------------------------------------------------------------------
# Prompt conditioning, for SD 1.5 and SDXL alike


@dataclass
class _Conditioning:
    embeds: torch.Tensor
    pooled: torch.Tensor | None
    time_ids: torch.Tensor | None

    def take(self, rows: Sequence[int]) -> _Conditioning:
        index = list(rows)
        return _Conditioning(
            self.embeds[index],
            None if self.pooled is None else self.pooled[index],
            None if self.time_ids is None else self.time_ids[index],
        )

    def unet_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"encoder_hidden_states": self.embeds}
        if self.pooled is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": self.pooled, "time_ids": self.time_ids}
        return kwargs


def _is_xl(pipe: Any) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None or hasattr(pipe, "tokenizer_2")


def _encode(pipe: Any, prompts: Sequence[str], negative: str, size: tuple[int, int]) -> _Conditioning:
    """Rows: the negative prompt's embedding first, then one per prompt (the pipelines' own encoders)."""
    device = pipe._execution_device
    embeds: list[torch.Tensor] = []
    pooled: list[torch.Tensor] = []
    for index, prompt in enumerate(prompts):
        out = pipe.encode_prompt(
            prompt=prompt,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=negative or None,
        )
        if index == 0:
            embeds.append(out[1])
            if _is_xl(pipe):
                pooled.append(out[3])
        embeds.append(out[0])
        if _is_xl(pipe):
            pooled.append(out[2])
    if not _is_xl(pipe):
        return _Conditioning(torch.cat(embeds), None, None)
    height, width = size
    projection = (
        int(pooled[0].shape[-1])
        if pipe.text_encoder_2 is None
        else int(pipe.text_encoder_2.config.projection_dim)
    )
    time_ids = pipe._get_add_time_ids(
        (height, width),
        (0, 0),
        (height, width),
        dtype=embeds[0].dtype,
        text_encoder_projection_dim=projection,
    ).to(device)
    return _Conditioning(torch.cat(embeds), torch.cat(pooled), time_ids.repeat(len(embeds), 1))


# ---------------------------------------------------------------------------------------
# DDIM inversion


@dataclass
class Inversion:
    """A photo's DDIM inversion: `trajectory[i]` is the latent at sampling step i's input
    timestep, `trajectory[steps]` the clean latent; `subject_maps` the identifier token's
    cross-attention per layer, read along the trajectory with the source prompt."""

    trajectory: list[torch.Tensor]
    timesteps: list[int]
    subject_maps: dict[str, torch.Tensor]
    prompt: str
    working_size: tuple[int, int]


def _ddim(pipe: Any, steps: int) -> Any:
    from diffusers import DDIMScheduler

    # DDIM is deterministic, so the inverted trajectory is the one sampling walks back down.
    # clip_sample defaults to True in DDIMScheduler and would clip latents: SD's own DDIM
    # config sets it False.
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False)
    scheduler.set_timesteps(steps, device=pipe._execution_device)
    return scheduler


def _alpha(scheduler: Any, timestep: int) -> float:
    return float(scheduler.alphas_cumprod[timestep] if timestep >= 0 else scheduler.final_alpha_cumprod)


def _noise_estimate(scheduler: Any, output: torch.Tensor, sample: torch.Tensor, alpha: float) -> torch.Tensor:
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return output
    if kind == "v_prediction":
        return math.sqrt(alpha) * output + math.sqrt(1 - alpha) * sample
    raise EditError(f"DDIM inversion supports epsilon and v_prediction models, not {kind}")


def working_size(pipe: Any, image_size: tuple[int, int], resolution: int | None) -> tuple[int, int]:
    """(height, width) the photo is processed at: its longer side at the model's resolution,
    both sides multiples of what the VAE and the UNet's downsampling divide evenly."""
    width, height = image_size
    target = resolution or int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
    multiple = int(pipe.vae_scale_factor) * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    scale = target / max(width, height)

    def snap(side: int) -> int:
        return max(multiple, round(side * scale / multiple) * multiple)

    return snap(height), snap(width)


def encode_image(pipe: Any, image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """The photo's latent at `size` (height, width): the VAE posterior's mean, scaled."""
    height, width = size
    resized = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    pixels = pipe.image_processor.preprocess(resized).to(pipe._execution_device, pipe.vae.dtype)
    with torch.no_grad():
        latent = pipe.vae.encode(pixels).latent_dist.mean
    return (latent * pipe.vae.config.scaling_factor).float()


def decode_latent(pipe: Any, latent: torch.Tensor) -> Image.Image:
    vae = pipe.vae
    with torch.no_grad():
        decoded = vae.decode(latent.to(vae.dtype) / vae.config.scaling_factor).sample
    return pipe.image_processor.postprocess(decoded.float(), output_type="pil")[0]


def invert(
    pipe: Any,
    image: Image.Image,
    prompt: str,
    identifier: str,
    *,
    steps: int = 50,
    resolution: int | None = None,
    refinements: int = 0,
    on_step: OnStep | None = None,
) -> Inversion:
    """DDIM inversion of the photo with the source prompt (no guidance), keeping the trajectory.

    The UNet is evaluated along the trajectory with the source prompt anyway, so the
    identifier token's cross-attention is read during these very calls: the subject
    mask needs no separate reconstruction pass.
    """
    size = working_size(pipe, image.size, resolution)
    latent = encode_image(pipe, image, size)
    scheduler = _ddim(pipe, steps)
    conditioning = _encode(pipe, [prompt], "", size).take([1])
    positions = token_positions(pipe.tokenizer, prompt, identifier)
    controller = AttentionController(latent_size=(latent.shape[-2], latent.shape[-1]), capture={0: positions})
    timesteps = [int(t) for t in scheduler.timesteps]
    ratio = scheduler.config.num_train_timesteps // steps
    trajectory: list[torch.Tensor] = [latent] * (steps + 1)
    current = latent
    with attention_control(pipe.unet, controller), torch.no_grad():
        for index in reversed(range(steps)):
            timestep = timesteps[index]
            controller.step = index
            alpha_t, alpha_lower = _alpha(scheduler, timestep), _alpha(scheduler, timestep - ratio)
            # First guess: the noise predicted at the less noisy latent (plain DDIM inversion);
            # each refinement re-predicts it at the current guess of the noisier latent, a
            # fixed-point iteration towards the exact inverse of the sampling step.
            guess = current
            for _ in range(refinements + 1):
                output = pipe.unet(guess.to(pipe.unet.dtype), timestep, **conditioning.unet_kwargs()).sample
                noise = _noise_estimate(scheduler, output.float(), guess, alpha_t)
                clean = (current - math.sqrt(1 - alpha_lower) * noise) / math.sqrt(alpha_lower)
                guess = math.sqrt(alpha_t) * clean + math.sqrt(1 - alpha_t) * noise
            current = guess
            trajectory[index] = current
            if on_step is not None:
                on_step("invert")
    maps = {name: value[0] for name, value in controller.maps().items()}
    return Inversion(trajectory, timesteps, maps, prompt, size)


# ---------------------------------------------------------------------------------------
# Sampling with blending


@dataclass
class _Blend:
    mask: torch.Tensor  # (1, 1, h, w) latent mask, 1 = target
    start: int
    end: int


def _sample(
    pipe: Any,
    inversion: Inversion,
    conditioning: _Conditioning,
    *,
    guidance: float,
    first: int,
    stop: int,
    start_latent: torch.Tensor,
    blend: _Blend | None,
    controller: AttentionController,
    source_row: bool,
    on_step: OnStep | None,
    phase: str,
) -> torch.Tensor:
    """DDIM steps `first`..`stop`-1 of the target branch from `start_latent`.

    Conditioning rows are (negative, source, target). The UNet batch is
    [target-uncond, target-cond] with guidance (just [target-cond] without), plus the
    source on its own trajectory when mutual self-attention needs its keys and values.
    """
    scheduler = _ddim(pipe, len(inversion.timesteps))
    guided = guidance > 1.0
    rows = [0, 2] if guided else [2]
    if source_row:
        rows.append(1)
    batch = conditioning.take(rows)
    latent = start_latent
    for step in range(first, stop):
        timestep = inversion.timesteps[step]
        controller.step = step
        inputs = [latent] * (2 if guided else 1)
        if source_row:
            inputs.append(inversion.trajectory[step])
        with torch.no_grad():
            output = pipe.unet(
                torch.cat(inputs).to(pipe.unet.dtype), timestep, **batch.unet_kwargs()
            ).sample.float()
        if guided:
            uncond, cond = output[0:1], output[1:2]
            prediction = uncond + guidance * (cond - uncond)
        else:
            prediction = output[0:1]
        latent = scheduler.step(prediction, timestep, latent).prev_sample
        if blend is not None and blend.start <= step < blend.end:
            latent = blend.mask * latent + (1 - blend.mask) * inversion.trajectory[step + 1]
        if on_step is not None:
            on_step(phase)
    return latent


def reconstruct(pipe: Any, inversion: Inversion, *, guidance: float = 1.0) -> torch.Tensor:
    """Samples the inverted trajectory's start back down with the source prompt, no blending.

    With guidance 1 this should land next to the photo's latent: how far it lands is
    the inversion's error on this model, which bounds what an edit can preserve.
    """
    size = inversion.working_size
    conditioning = _encode(pipe, [inversion.prompt, inversion.prompt], "", size)
    latent = inversion.trajectory[0]
    controller = AttentionController(latent_size=(latent.shape[-2], latent.shape[-1]))
    return _sample(
        pipe,
        inversion,
        conditioning,
        guidance=guidance,
        first=0,
        stop=len(inversion.timesteps),
        start_latent=latent,
        blend=None,
        controller=controller,
        source_row=False,
        on_step=None,
        phase="reconstruct",
    )


# ---------------------------------------------------------------------------------------
# Masks


def attention_mask(
    maps: dict[str, torch.Tensor], latent_size: tuple[int, int], threshold: float
) -> np.ndarray:
    """Identifier-token maps (per layer, (h, w)) to a boolean latent-size mask.

    Layers at the latent's full resolution are left out (their maps are the noisiest);
    the others are upsampled, averaged, min-max scaled and thresholded, so the mask
    holds at least the strongest response whenever the maps are not flat.
    """
    height, width = latent_size
    chosen = [m for m in maps.values() if m.shape[-2] < height] or list(maps.values())
    if not chosen:
        raise EditError("no cross-attention maps were captured")
    stacked = torch.stack(
        [
            nnf.interpolate(
                m[None, None].float(), size=(height, width), mode="bilinear", align_corners=False
            )[0, 0]
            for m in chosen
        ]
    )
    mean = stacked.mean(dim=0)
    low, high = float(mean.min()), float(mean.max())
    if high - low <= 1e-12:
        return np.zeros((height, width), dtype=bool)
    scaled = ((mean - low) / (high - low)).cpu().numpy()
    return np.asarray(scaled >= threshold)


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to (width, height)."""
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
    return np.asarray(image) > 127


def composite_weight(
    automatic: np.ndarray | None,
    user: np.ndarray | None,
    mode: UserMaskMode,
    *,
    dilate_px: float,
    feather_px: float,
) -> np.ndarray:
    """The float composite weight in [0, 1] at the photo's size (0: the photo's own pixel).

    The automatic mask is dilated by `dilate_px` and feathered outward over `feather_px`
    by distance, so it is exactly 0 beyond dilate+feather. A user mask is feathered
    inward, so nothing outside it is ever touched: "replace" uses it alone, "constrain"
    keeps the automatic weight only inside it.
    """
    weight: np.ndarray | None = None
    if automatic is not None and not (user is not None and mode == "replace"):
        distance = ndimage.distance_transform_edt(~automatic)
        if feather_px > 0:
            weight = np.clip((dilate_px + feather_px - distance) / feather_px, 0.0, 1.0)
        else:
            weight = (distance <= dilate_px).astype(np.float64)
    if user is not None:
        inside = ndimage.distance_transform_edt(user)
        user_weight = np.clip(inside / feather_px, 0.0, 1.0) if feather_px > 0 else user.astype(np.float64)
        weight = user_weight if weight is None else np.minimum(weight, user_weight)
    if weight is None:
        raise EditError("no mask: neither an automatic nor a user mask was given")
    return np.asarray(weight, dtype=np.float64)


def composite(original: np.ndarray, edited: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Pixel-space composite; where the weight is 0 the photo's pixel is copied, bit for bit."""
    w = weight[..., None]
    mixed = np.rint(w * edited.astype(np.float64) + (1 - w) * original.astype(np.float64))
    return np.where(w > 0, np.clip(mixed, 0, 255).astype(np.uint8), original)


def _weight_image(weight: np.ndarray) -> Image.Image:
    # ceil keeps every touched pixel non-zero in the 8-bit copy, so "0" means "the photo's pixel".
    return Image.fromarray(np.ceil(weight * 255).astype(np.uint8), mode="L")


def _mask_image(mask: np.ndarray, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(_resize_mask(mask, size).astype(np.uint8) * 255, mode="L")


def _latent_mask(weight: np.ndarray, latent_size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Latent cells that any touched pixel falls in (max pooling of the composite weight)."""
    touched = torch.from_numpy((weight > 0).astype(np.float32))[None, None]
    height, width = latent_size
    pooled = nnf.adaptive_max_pool2d(touched, (height, width))
    return pooled.to(device)


# ---------------------------------------------------------------------------------------
# The edit


def _check(settings: EditSettings, image: Image.Image) -> None:
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


def edit_image(
    pipe: Any,
    image: Image.Image,
    settings: EditSettings,
    progress: ProgressCallback[StepProgress] | None = None,
) -> EditResult:
    """Runs NIMA on one photo; see the module docstring for the method.

    `progress` gets every UNet step of the whole edit (phases invert, mask, edit); returning
    "stop" or raising progress.Cancelled cancels between steps (Cancelled propagates).
    """
    image = image.convert("RGB")
    _check(settings, image)
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
    conditioning = _encode(
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
            ahead = _sample(
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
            None if union is None else _resize_mask(union, image.size),
            user,
            settings.user_mask_mode,
            dilate_px=_margin_px(settings.dilate_px, inversion.working_size) * scale,
            feather_px=_margin_px(settings.feather_px, inversion.working_size) * scale,
        )
        blend = _Blend(_latent_mask(weight, latent_size, latent_start.device), settings.blend_start, end)
        first, start_latent = resume if resume is not None else (0, latent_start)
        final = _sample(
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
        region=_weight_image(weight),
        subject_mask=None if subject is None else _mask_image(subject, image.size),
        target_mask=None if target is None else _mask_image(target, image.size),
        latent=final,
        settings=settings,
    )


def load_user_mask(path: str, size: tuple[int, int]) -> np.ndarray:
    """A painted mask file (white = editable) as a boolean array; it must match the photo's size."""
    mask = Image.open(path)
    if mask.size != size:
        raise EditError(f"the mask {path} is {mask.size[0]}x{mask.size[1]}, the photo {size[0]}x{size[1]}")
    gray = np.asarray(mask.convert("L"))
    return np.asarray(gray > 127)
