"""The target branch's DDIM sampling, blended with the source trajectory outside the edit region."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from personalization.attention import AttentionController
from personalization.edit.conditioning import Conditioning, encode_prompts
from personalization.edit.inversion import Inversion, ddim
from personalization.edit.settings import LatentHook, OnStep


@dataclass
class Blend:
    mask: torch.Tensor  # (1, 1, h, w) latent mask, 1 = target
    start: int
    end: int


def sample(
    pipe: Any,
    inversion: Inversion,
    conditioning: Conditioning,
    *,
    guidance: float,
    first: int,
    stop: int,
    start_latent: torch.Tensor,
    blend: Blend | None,
    controller: AttentionController,
    source_row: bool,
    on_step: OnStep | None,
    phase: str,
    on_latent: LatentHook | None = None,
) -> torch.Tensor:
    """DDIM steps `first`..`stop`-1 of the target branch from `start_latent`.

    Conditioning rows are (negative, source, target). The UNet batch is
    [target-uncond, target-cond] with guidance (just [target-cond] without), plus the
    source on its own trajectory when mutual self-attention needs its keys and values.
    """
    scheduler = ddim(pipe, len(inversion.timesteps))
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
        if on_latent is not None:
            on_latent(phase, step, latent)
        if on_step is not None:
            on_step(phase)
    return latent


def reconstruct(pipe: Any, inversion: Inversion, *, guidance: float = 1.0) -> torch.Tensor:
    """Samples the inverted trajectory's start back down with the source prompt, no blending.

    With guidance 1 this should land next to the photo's latent: how far it lands is
    the inversion's error on this model, which bounds what an edit can preserve.
    """
    size = inversion.working_size
    conditioning = encode_prompts(pipe, [inversion.prompt, inversion.prompt], "", size)
    latent = inversion.trajectory[0]
    controller = AttentionController(latent_size=(latent.shape[-2], latent.shape[-1]))
    return sample(
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
