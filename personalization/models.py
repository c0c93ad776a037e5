"""Loading a base text-to-image model: SD 1.5 or SDXL, from a hub id or a local folder.

Every caller (training, generation, editing, the tiny test model) goes through
`load_pipeline`, so a tiny random-weight folder and real weights take the same path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeAlias

import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)

ModelKind = Literal["sd15", "sdxl"]
KindChoice = Literal["auto", "sd15", "sdxl"]
# diffusers is untyped (its classes are Any to mypy): the alias documents intent for readers.
SDPipeline: TypeAlias = StableDiffusionPipeline | StableDiffusionXLPipeline

_PIPELINE_CLASSES: dict[str, ModelKind] = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl",
}


class ModelLoadError(ValueError):
    """The base model cannot be used: unknown architecture, missing folder, bad kind."""


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """CUDA when present (the product's GPU workers), else CPU; an explicit choice wins."""
    if preferred is not None:
        return torch.device(preferred)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that have it (no fp16 overflow in the SDXL VAE), fp16 on older GPUs, fp32 on CPU.

    CPU half precision is slow and not bit-reproducible, which the tests rely on.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _load_failure(base_model: str | Path, error: Exception) -> str:
    """One line for a model diffusers could not load, saying where it looked (diffusers says why)."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if Path(base_model).is_dir():
        return f"cannot load the base model folder {str(base_model)!r}: {reason}"
    return (
        f"cannot load the base model {str(base_model)!r}: it is not a local model folder, and the hub "
        f"did not serve it ({reason})"
    )


def detect_kind(base_model: str | Path, *, revision: str | None = None) -> ModelKind:
    """Reads model_index.json (a local file, or the hub's copy) to tell SD 1.5 from SDXL."""
    local = Path(base_model)
    if local.is_dir():
        index_path = local / "model_index.json"
        if not index_path.is_file():
            raise ModelLoadError(f"{local} is not a diffusers model folder: it has no model_index.json")
        config: dict[str, Any] = json.loads(index_path.read_text())
    else:
        try:
            config = dict(DiffusionPipeline.load_config(str(base_model), revision=revision))
        except (OSError, ValueError) as error:
            raise ModelLoadError(_load_failure(base_model, error)) from error
    class_name = str(config.get("_class_name", ""))
    if class_name not in _PIPELINE_CLASSES:
        supported = ", ".join(sorted(_PIPELINE_CLASSES))
        raise ModelLoadError(f"{base_model} is a {class_name or 'unknown'} model; supported: {supported}")
    return _PIPELINE_CLASSES[class_name]


def native_resolution(base_model: str | Path, *, revision: str | None = None) -> int:
    """The image side the base model was trained at, from its configs alone (no weights loaded).

    The pipelines' own default: the UNet's sample size times the VAE's downscaling
    (tiny 32 x 2 = 64, SD 1.5 64 x 8 = 512, SDXL 128 x 8 = 1024). Presets train at it.
    """
    try:
        unet = UNet2DConditionModel.load_config(str(base_model), subfolder="unet", revision=revision)
        vae = AutoencoderKL.load_config(str(base_model), subfolder="vae", revision=revision)
    except (OSError, ValueError) as error:
        raise ModelLoadError(_load_failure(base_model, error)) from error
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)


def pipeline_kind(pipe: DiffusionPipeline) -> ModelKind:
    """The architecture of an already loaded pipeline (SDXL subclasses are checked first)."""
    if isinstance(pipe, StableDiffusionXLPipeline):
        return "sdxl"
    if isinstance(pipe, StableDiffusionPipeline):
        return "sd15"
    raise ModelLoadError(f"unsupported pipeline class {type(pipe).__name__}")


def load_pipeline(
    base_model: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    kind: KindChoice = "auto",
    revision: str | None = None,
    **from_pretrained_kwargs: Any,
) -> SDPipeline:
    """Loads the diffusers pipeline for `base_model` on `device` in `dtype`.

    Attention runs through PyTorch's scaled_dot_product_attention, which is diffusers'
    default processor on torch 2: nothing here replaces it.
    """
    resolved_kind = detect_kind(base_model, revision=revision) if kind == "auto" else kind
    if resolved_kind not in ("sd15", "sdxl"):
        raise ModelLoadError(f"kind must be auto, sd15 or sdxl, not {kind!r}")
    target_device = pick_device(device)
    target_dtype = dtype if dtype is not None else default_dtype(target_device)
    pipeline_class = StableDiffusionXLPipeline if resolved_kind == "sdxl" else StableDiffusionPipeline
    try:
        pipe = pipeline_class.from_pretrained(
            str(base_model), dtype=target_dtype, revision=revision, **from_pretrained_kwargs
        )
    except (OSError, ValueError) as error:
        raise ModelLoadError(_load_failure(base_model, error)) from error
    pipe.to(target_device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def base_model_revision(base_model: str | Path, revision: str | None = None) -> str | None:
    """The hub commit a hub id resolves to (recorded in manifests), None for a local folder.

    Called after load_pipeline, so the snapshot is already in the local cache.
    """
    if Path(base_model).is_dir():
        return None
    folder = Path(DiffusionPipeline.download(str(base_model), revision=revision, local_files_only=True))
    return folder.name
