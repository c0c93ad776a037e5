"""The GPU worker's pipeline cache: base models stay loaded between jobs, a job's model for its length only.

A worker process runs one job at a time (one per GPU); loading a base pipeline
takes seconds to a minute (SDXL from disk to a GPU) while a tiny-model job takes
seconds, so the process keeps the base pipelines it loaded in the core's
PipelineCache (an LRU within LIKENESS_PIPELINE_CACHE_BYTES of parameters and
buffers). Each job applies its model version's LoRA and tokens to the cached
base for the job's length; the cache takes them off again afterwards, however
the job ended, so no subject's trained weights outlive their job in a module
another job uses. This is the one place that loads: the kinds call
`trained_pipeline()`.

torch is imported only here and in the kinds' workers, inside functions: the web
process imports this package and must never load it (CUDA is initialised in
the worker alone).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from personalization.cache import PipelineCache


@dataclass(frozen=True)
class LoadedModel:
    """A cached base pipeline with one trained folder applied, at the manifest's default LoRA scales."""

    pipe: Any
    manifest: Any  # personalization.artifacts.TrainedManifest
    device: str
    reused: bool  # the base was loaded already (a cache hit)
    load_seconds: float  # base load (on a miss) and the version's LoRA and tokens


_lock = threading.Lock()
_cache: PipelineCache | None = None


def pipeline_cache() -> PipelineCache:
    """The process's cache, made on first use (in the worker: importing the core loads torch)."""
    global _cache
    with _lock:
        if _cache is None:
            from personalization.cache import PipelineCache

            _cache = PipelineCache(settings.LIKENESS_PIPELINE_CACHE_BYTES)
        return _cache


def device_name() -> str:
    """The device jobs run on, for the job's meter: "cuda:0 (NVIDIA H200)" or "cpu"."""
    import torch

    from personalization.models import pick_device

    device = pick_device()
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


@contextmanager
def trained_pipeline(base_model: str, folder: Path) -> Iterator[LoadedModel]:
    """The base pipeline of `base_model` from the cache with `folder` (a trained model) applied."""
    cache = pipeline_cache()
    loads = cache.loads
    started = time.monotonic()
    with cache.trained(folder, base_model=base_model) as (pipe, manifest):
        yield LoadedModel(pipe, manifest, device_name(), cache.loads == loads, time.monotonic() - started)
