"""The loaded model a GPU worker keeps between jobs, so the next job of the same model does not reload it.

A worker process runs one job at a time (one per GPU); loading a base pipeline
takes seconds to minutes (SD 1.5: ~2 GB of weights) while a tiny-model job
takes seconds, so the last model used stays loaded. This is the one place that
loads: the kinds call `trained_pipeline()` and never load_generator directly.

Interim: the core's PipelineCache (an LRU of clean base pipelines, each job's
LoRA and tokens loaded onto one and taken off again) replaces this module's
inside once it is merged; until then the last pipeline is kept *with* its
trained weights, keyed by the exact artifact, and any other model loads from
scratch. Residual risk until then: a subject's trained weights stay in the
worker's memory after their job (never on disk) until the next job of another
model or the worker's restart, erasure included (docs/compliance.md).

torch is imported only here and in editing.worker, inside functions: the web
process imports this package and must never load it (CUDA is initialised in
the worker alone).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LoadedModel:
    """A base pipeline with one trained folder applied, at the manifest's default LoRA scales."""

    pipe: Any
    manifest: Any  # personalization.artifacts.TrainedManifest
    device: str
    reused: bool
    load_seconds: float


@dataclass
class _Kept:
    key: tuple[str, str, str]
    pipe: Any
    manifest: Any


_lock = threading.Lock()
_kept: _Kept | None = None


def device_name() -> str:
    """The device jobs run on, for the job's meter: "cuda:0 (NVIDIA H200)" or "cpu"."""
    import torch

    from personalization.models import pick_device

    device = pick_device()
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def forget() -> None:
    """Drop the kept pipeline (its memory goes back to the allocator)."""
    global _kept
    _kept = None
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextmanager
def trained_pipeline(base_model: str, folder: Path, version: str) -> Iterator[LoadedModel]:
    """The base pipeline with `folder` (a trained model, `version` naming its exact files) applied.

    Reused as it is when the last job ran the same version on the same device;
    dropped when a job fails inside, so no half-changed pipeline serves the next.
    """
    global _kept
    from personalization.artifacts import ADAPTER_NAME, set_trained_scales
    from personalization.generate import load_generator
    from personalization.models import pick_device

    device = pick_device()
    key = (base_model, version, str(device))
    with _lock:
        started = time.monotonic()
        kept = _kept
        reused = kept is not None and kept.key == key
        if kept is not None and reused:
            pipe, manifest = kept.pipe, kept.manifest
            # The last job may have changed the LoRA scales (generation's are MagiCapture's 0.6 / 0.9).
            set_trained_scales(
                pipe,
                ADAPTER_NAME,
                unet_scale=manifest.default_scales.get("unet", 1.0),
                text_scale=manifest.default_scales.get("text", 1.0),
            )
        else:
            if kept is not None:
                forget()  # the previous model's memory goes before the next one loads
            pipe, manifest = load_generator(folder, base_model=base_model, device=device)
            _kept = _Kept(key, pipe, manifest)
        loaded = LoadedModel(pipe, manifest, device_name(), reused, time.monotonic() - started)
        try:
            yield loaded
        except BaseException:
            forget()
            raise
