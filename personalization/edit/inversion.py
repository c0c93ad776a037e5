"""DDIM inversion of a photo, keeping its latent trajectory; the VAE and working-size helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from personalization.attention import AttentionController, attention_control, token_positions
from personalization.edit.conditioning import encode_prompts
from personalization.edit.framing import working_size
from personalization.edit.settings import EditError, OnStep


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


def ddim(pipe: Any, steps: int) -> Any:
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
    scheduler = ddim(pipe, steps)
    conditioning = encode_prompts(pipe, [prompt], "", size).take([1])
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
