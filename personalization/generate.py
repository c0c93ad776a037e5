"""Portrait generation from a trained subject (MagiCapture inference), alone or in a trained style.

A trained folder (see artifacts.py) is applied to its base model; prompts name the
subject and style through the manifest's tokens, so `{identity}` and `{style}` in a
prompt are written out as those tokens. The LoRA strength is set separately for the
UNet and the text side (MagiCapture infers at 0.6 / 0.9). A batch is one pipeline
call while memory allows; each image has its own seed (seed + index), so an image is
the same whether it was made alone or in a batch.

High resolution: SDXL generates at its native 1024 px; SD 1.5 can add a second pass
that upscales the first pass (its latent, or its decoded image) and runs img2img over
it at moderate strength, which needs no extra weights. Super-resolution and face
restoration are optional plugins configured by path (MagiCapture post-processes
with both; they lower identity similarity slightly, so they are off by default).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from personalization.artifacts import (
    ADAPTER_NAME,
    TrainedManifest,
    load_trained,
    read_manifest,
    set_trained_scales,
)
from personalization.models import load_pipeline
from personalization.presets import SCHEDULERS
from personalization.progress import ProgressCallback, StepCounter, StepProgress
from personalization.prompts import DEFAULT_PROMPT, expand_prompt

ImagePlugin = Callable[[Image.Image], Image.Image]
HiresMode = Literal["latent", "image"]

# MagiCapture's inference scales (paper and official code).
DEFAULT_UNET_SCALE = 0.6
DEFAULT_TEXT_SCALE = 0.9


class GenerationError(ValueError):
    """The generation cannot run as asked (unknown scheduler, bad plugin, missing style token)."""


def _scheduler_factories() -> dict[str, tuple[Any, dict[str, Any]]]:
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        LMSDiscreteScheduler,
        PNDMScheduler,
        UniPCMultistepScheduler,
    )

    return {
        "ddim": (DDIMScheduler, {"clip_sample": False}),
        "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
        "euler": (EulerDiscreteScheduler, {}),
        "euler-a": (EulerAncestralDiscreteScheduler, {}),
        "dpm++2m": (DPMSolverMultistepScheduler, {}),
        "dpm++2m-karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
        "unipc": (UniPCMultistepScheduler, {}),
        "lms": (LMSDiscreteScheduler, {}),
    }


@dataclass
class HiresSettings:
    """SD 1.5's second pass: upscale by `scale`, then img2img at `strength` (0 < strength <= 1)."""

    scale: float = 2.0
    strength: float = 0.4
    mode: HiresMode = "latent"


@dataclass
class GenerationSettings:
    """One generation request. `prompt` may hold {identity}, {style} and {class_word}."""

    prompt: str = DEFAULT_PROMPT
    # The manifest role of a trained style token ("style"): appends " in the <token> style".
    style: str | None = None
    negative_prompt: str = ""
    count: int = 1
    seed: int = 0
    steps: int = 50
    guidance: float = 7.5
    scheduler: str = "default"
    width: int | None = None
    height: int | None = None
    unet_scale: float = DEFAULT_UNET_SCALE
    text_scale: float = DEFAULT_TEXT_SCALE
    hires: HiresSettings | None = None
    super_resolution: str | None = None
    face_restoration: str | None = None
    max_batch: int | None = None


@dataclass
class GenerationResult:
    images: list[Image.Image]
    seeds: list[int]
    prompt: str
    negative_prompt: str | None
    settings: GenerationSettings = field(repr=False)


def load_generator(
    model_dir: str | Path,
    *,
    base_model: str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[Any, TrainedManifest]:
    """The base pipeline with the trained folder applied; `base_model` overrides the manifest's.

    The manifest records where the base model was when training ran; a worker that
    keeps its base models elsewhere passes the local folder here.
    """
    manifest = read_manifest(model_dir)
    pipe = load_pipeline(base_model or manifest.base_model, device=device, dtype=dtype)
    load_trained(pipe, model_dir)
    return pipe, manifest


def load_plugin(spec: str) -> ImagePlugin:
    """An image plugin from "path/to/file.py:function" or "package.module:function".

    The function takes and returns a PIL image; it wraps whatever model it needs (a
    face restorer, an upscaler) and finds that model's weights itself.
    """
    location, sep, name = spec.rpartition(":")
    if not sep or not location or not name:
        raise GenerationError(f"a plugin is given as FILE.py:FUNCTION or MODULE:FUNCTION, not {spec!r}")
    if location.endswith(".py"):
        path = Path(location)
        if not path.is_file():
            raise GenerationError(f"the plugin file {path} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"likeness_plugin_{path.stem}", path)
        if module_spec is None or module_spec.loader is None:
            raise GenerationError(f"cannot load the plugin file {path}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(location)
        except ImportError as error:
            raise GenerationError(f"cannot import the plugin module {location}: {error}") from error
    function = getattr(module, name, None)
    if not callable(function):
        raise GenerationError(f"the plugin {spec!r} has no function {name!r}")
    return function


def _apply_plugin(spec: str, images: list[Image.Image]) -> list[Image.Image]:
    plugin = load_plugin(spec)
    out = []
    for image in images:
        result = plugin(image)
        if not isinstance(result, Image.Image):
            raise GenerationError(f"the plugin {spec!r} returned {type(result).__name__}, not a PIL image")
        out.append(result.convert("RGB"))
    return out


def _make_scheduler(name: str, config: Any) -> Any:
    scheduler_class, extra = _scheduler_factories()[name]
    return scheduler_class.from_config(config, **extra)


def _check(settings: GenerationSettings) -> None:
    if settings.count < 1:
        raise GenerationError("count must be at least 1")
    if settings.steps < 1:
        raise GenerationError("steps must be at least 1")
    if settings.max_batch is not None and settings.max_batch < 1:
        raise GenerationError("max_batch must be at least 1")
    if settings.scheduler not in SCHEDULERS:
        raise GenerationError(
            f"unknown scheduler {settings.scheduler!r}; choose from {', '.join(SCHEDULERS)}"
        )
    if settings.hires is not None:
        if not 0.0 < settings.hires.strength <= 1.0:
            raise GenerationError("the second pass strength must be in (0, 1]")
        if settings.hires.scale <= 1.0:
            raise GenerationError("the second pass scale must be above 1")
        if settings.hires.mode not in ("latent", "image"):
            raise GenerationError("the second pass mode is 'latent' or 'image'")
    for name in ("width", "height"):
        value = getattr(settings, name)
        if value is not None and (value < 8 or value % 8):
            raise GenerationError(f"{name} must be a positive multiple of 8, got {value}")


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def _generators(seeds: Sequence[int]) -> list[torch.Generator]:
    # CPU generators give the same noise on every device, so a seed means the same image everywhere.
    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


def _run_batches(
    seeds: list[int], max_batch: int | None, call: Callable[[list[int]], list[Any]]
) -> list[Any]:
    """Runs `call` over `seeds` in as few pipeline calls as memory allows.

    Starts with all of them in one call (or `max_batch`), halves the chunk after an
    out-of-memory error and goes on from where it failed; a single image that does
    not fit re-raises.
    """
    chunk = len(seeds) if max_batch is None else min(max_batch, len(seeds))
    results: list[Any] = []
    position = 0
    while position < len(seeds):
        part = seeds[position : position + chunk]
        try:
            results.extend(call(part))
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not _is_out_of_memory(error) or chunk == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            chunk = max(1, chunk // 2)
            continue
        position += len(part)
    return results


def generate(
    pipe: Any,
    manifest: TrainedManifest | None,
    settings: GenerationSettings,
    progress: ProgressCallback[StepProgress] | None = None,
) -> GenerationResult:
    """Generates `settings.count` images.

    `progress` gets every denoising step of every pipeline call (phase "generate", or "generate
    1/2" and "generate 2/2" with a second pass); `total` counts them all and is corrected as each
    call starts and its scheduler's step count is known. Returning "stop" or raising
    progress.Cancelled cancels between steps (Cancelled propagates; nothing is returned).
    """
    _check(settings)
    tokens = manifest.tokens if manifest is not None else {}
    class_word = manifest.class_word if manifest is not None else "person"
    prompt = expand_prompt(settings.prompt, tokens, class_word, style=settings.style)
    # No negative prompt is None, not "": SDXL then uses zero embeddings, as its pipeline does.
    negative = (
        expand_prompt(settings.negative_prompt, tokens, class_word) if settings.negative_prompt else None
    )
    if manifest is not None:
        set_trained_scales(pipe, ADAPTER_NAME, unet_scale=settings.unet_scale, text_scale=settings.text_scale)
    seeds = [settings.seed + index for index in range(settings.count)]
    original_scheduler = pipe.scheduler
    if settings.scheduler != "default":
        pipe.scheduler = _make_scheduler(settings.scheduler, original_scheduler.config)
    try:
        first_output = "latent" if settings.hires is not None and settings.hires.mode == "latent" else "pil"
        total_passes = 1 if settings.hires is None else 2
        # Steps of one pipeline call per pass: estimated first (img2img runs strength x steps),
        # then read from the pipeline when a call starts.
        per_call = [settings.steps] + (
            [] if settings.hires is None else [int(settings.steps * settings.hires.strength)]
        )
        first_chunk = (
            settings.count if settings.max_batch is None else min(settings.max_batch, settings.count)
        )
        counter = StepCounter(progress, math.ceil(settings.count / first_chunk) * sum(per_call))

        def report(phase: str, pass_index: int, part: list[int]) -> Callable[..., dict[str, Any]]:
            def on_step_end(_pipe: Any, step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
                if step == 0:
                    per_call[pass_index] = int(_pipe.num_timesteps)
                    calls_left = math.ceil((len(seeds) - seeds.index(part[0])) / len(part))
                    later = sum(per_call[pass_index + 1 :]) * math.ceil(len(seeds) / len(part))
                    counter.set_total(counter.done + calls_left * per_call[pass_index] + later)
                counter.step(phase)
                return kwargs

            return on_step_end

        def first_pass(part: list[int]) -> list[Any]:
            output = pipe(
                prompt=[prompt] * len(part),
                negative_prompt=None if negative is None else [negative] * len(part),
                num_inference_steps=settings.steps,
                guidance_scale=settings.guidance,
                width=settings.width,
                height=settings.height,
                generator=_generators(part),
                output_type=first_output,
                callback_on_step_end=report("generate" if total_passes == 1 else "generate 1/2", 0, part),
            )
            images = output.images
            return list(images.unbind(0)) if first_output == "latent" else list(images)

        firsts = _run_batches(seeds, settings.max_batch, first_pass)
        if settings.hires is not None:
            hires = settings.hires
            second = _second_pass_pipeline(pipe)

            def second_pass(part: list[int]) -> list[Any]:
                start = [firsts[seeds.index(seed)] for seed in part]
                upscaled = _upscale(pipe, start, hires)
                output = second(
                    prompt=[prompt] * len(part),
                    negative_prompt=None if negative is None else [negative] * len(part),
                    image=upscaled,
                    strength=hires.strength,
                    num_inference_steps=settings.steps,
                    guidance_scale=settings.guidance,
                    generator=_generators(part),
                    output_type="pil",
                    callback_on_step_end=report("generate 2/2", 1, part),
                )
                return list(output.images)

            images = _run_batches(seeds, settings.max_batch, second_pass)
        else:
            images = firsts
    finally:
        pipe.scheduler = original_scheduler
    if settings.super_resolution:
        images = _apply_plugin(settings.super_resolution, images)
    if settings.face_restoration:
        images = _apply_plugin(settings.face_restoration, images)
    return GenerationResult(
        images=images, seeds=seeds, prompt=prompt, negative_prompt=negative, settings=settings
    )


def _second_pass_pipeline(pipe: Any) -> Any:
    """The img2img pipeline over the same modules (LoRA, tokens and scheduler included)."""
    from diffusers import AutoPipelineForImage2Image

    second = AutoPipelineForImage2Image.from_pipe(pipe)
    second.set_progress_bar_config(disable=True)
    return second


def _upscale(pipe: Any, firsts: list[Any], hires: HiresSettings) -> Any:
    """Latent mode interpolates the first pass's latents; image mode decodes and resizes with Lanczos."""
    if hires.mode == "latent":
        latents = torch.stack(firsts)
        height, width = latents.shape[-2:]
        size = (round(height * hires.scale), round(width * hires.scale))
        return torch.nn.functional.interpolate(latents.float(), size=size, mode="bicubic").to(latents.dtype)
    images: list[Image.Image] = []
    multiple = 8 * int(pipe.vae_scale_factor)
    for image in firsts:
        width = max(multiple, math.floor(image.width * hires.scale / multiple) * multiple)
        height = max(multiple, math.floor(image.height * hires.scale / multiple) * multiple)
        images.append(image.resize((width, height), Image.Resampling.LANCZOS))
    return images
