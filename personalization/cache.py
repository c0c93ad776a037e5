"""Base pipelines kept loaded between the jobs of a long-lived worker, within a memory budget.

Loading a base model costs seconds (the tiny one) to a minute (SDXL from disk to a GPU), far
more than a short generation, so a worker keeps the pipelines it loaded: an LRU keyed by the
base model (a hub id and revision, or a local folder and the stamps of its files, so a rebuilt
folder is never served stale), its kind, the device and the dtype. The budget counts the bytes
of the loaded modules' parameters and buffers; the least recently used pipelines are dropped
until a new one fits, and one larger than the whole budget is still served, then dropped next.

A job applies a trained folder (LoRA and token embeddings) to the cached base for its length only
(`with cache.trained(folder) as (pipe, manifest)`); afterwards the base is exactly as loaded: the
LoRA layers are removed (diffusers' unload_lora_weights) and the tokenizers and input embeddings
the job replaced are put back (load_textual_inversion resizes the embedding into a new module and
adds tokens to the tokenizer, so the untouched originals are kept aside and restored). That is
tested bit for bit against freshly loaded pipelines.

One job at a time per pipeline: a pipeline in use is never evicted, and using it twice at once
raises. A worker runs one job at a time (one process per GPU), which is what this is for.
"""

from __future__ import annotations

import copy
import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from personalization.artifacts import TrainedManifest, load_trained, read_manifest
from personalization.models import (
    ModelKind,
    SDPipeline,
    default_dtype,
    detect_kind,
    load_pipeline,
    pick_device,
    pipeline_kind,
)
from personalization.prior import base_model_key

logger = logging.getLogger(__name__)

Loader = Callable[..., SDPipeline]


class CacheError(RuntimeError):
    """The cache cannot serve the request (a pipeline already in use by another job)."""


@dataclass(frozen=True)
class PipelineKey:
    base_model: str  # a hub id, or a local folder's resolved path
    identity: str  # hub id + revision, or the folder's path and file stamps (prior.base_model_key)
    kind: ModelKind
    device: str
    dtype: str


@dataclass
class _Entry:
    pipe: SDPipeline
    size: int
    in_use: bool = False


def pipeline_bytes(pipe: Any) -> int:
    """Bytes of the parameters and buffers of every module the pipeline holds (each tensor once)."""
    seen: set[int] = set()
    total = 0
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in [*component.parameters(), *component.buffers()]:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


class PipelineCache:
    """An LRU of loaded base pipelines within `max_bytes`; see the module docstring."""

    def __init__(self, max_bytes: int, *, loader: Loader = load_pipeline) -> None:
        if max_bytes < 0:
            raise ValueError("the cache budget must not be negative")
        self.max_bytes = max_bytes
        self.loader = loader
        self.loads = 0
        self.hits = 0
        self.evictions = 0
        self._entries: OrderedDict[PipelineKey, _Entry] = OrderedDict()
        self._known_sizes: dict[PipelineKey, int] = {}
        self._lock = threading.Lock()

    # ---- keys and bookkeeping ------------------------------------------------------------------

    def key(
        self,
        base_model: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        revision: str | None = None,
    ) -> PipelineKey:
        local = Path(base_model)
        name = str(local.resolve()) if local.is_dir() else str(base_model)
        target = pick_device(device)
        return PipelineKey(
            base_model=name,
            identity=base_model_key(base_model, revision),
            kind=detect_kind(base_model, revision=revision),
            device=str(target),
            dtype=str(dtype if dtype is not None else default_dtype(target)),
        )

    @property
    def used_bytes(self) -> int:
        return sum(entry.size for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def _evict_until(self, budget: int) -> None:
        """Drops least recently used pipelines not in use until the rest take at most `budget`."""
        for key in list(self._entries):
            if self.used_bytes <= budget:
                return
            if not self._entries[key].in_use:
                self._drop(key)

    def _drop(self, key: PipelineKey) -> None:
        entry = self._entries.pop(key)
        self.evictions += 1
        logger.info("pipeline cache: dropped %s (%d MiB)", key.base_model, entry.size // 2**20)
        del entry
        gc.collect()
        if key.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def clear(self) -> None:
        with self._lock:
            self._evict_until(0)

    # ---- use -----------------------------------------------------------------------------------

    def _acquire(self, key: PipelineKey, revision: str | None) -> SDPipeline:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                if entry.in_use:
                    raise CacheError(f"the pipeline of {key.base_model} is in use by another job")
                self._entries.move_to_end(key)
                self.hits += 1
            else:
                # Room first when this model's size is known (a reload), so two never coexist needlessly.
                self._evict_until(self.max_bytes - self._known_sizes.get(key, 0))
                pipe = self.loader(
                    key.base_model,
                    device=key.device,
                    dtype=getattr(torch, key.dtype.removeprefix("torch.")),
                    kind=key.kind,
                    revision=revision,
                )
                self.loads += 1
                entry = _Entry(pipe, pipeline_bytes(pipe))
                self._known_sizes[key] = entry.size
                self._entries[key] = entry
                # Then the rest: a pipeline larger than the budget stays for this use, dropped next.
                self._evict_until(max(self.max_bytes, entry.size))
            entry.in_use = True
            return entry.pipe

    def _release(self, key: PipelineKey, *, broken: bool) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry.in_use = False
            if broken:
                self._drop(key)  # its state is unknown: never serve it again
            else:
                self._evict_until(self.max_bytes)

    @contextmanager
    def base(
        self,
        base_model: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        revision: str | None = None,
    ) -> Iterator[SDPipeline]:
        """The cached base pipeline for the length of a `with` block; the block must not change it."""
        key = self.key(base_model, device=device, dtype=dtype, revision=revision)
        pipe = self._acquire(key, revision)
        try:
            yield pipe
        finally:
            self._release(key, broken=False)

    @contextmanager
    def trained(
        self,
        model_dir: str | Path,
        *,
        base_model: str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        unet_scale: float | None = None,
        text_scale: float | None = None,
    ) -> Iterator[tuple[SDPipeline, TrainedManifest]]:
        """The cached base with `model_dir` applied (artifacts.load_trained) for one job.

        `base_model` overrides the manifest's (a worker keeping its models elsewhere). The base
        is restored when the block ends, however it ends; a restore that fails drops the
        pipeline from the cache instead of serving it changed.
        """
        manifest = read_manifest(model_dir)
        base = base_model or manifest.base_model
        revision = None if base_model is not None else manifest.base_model_revision
        key = self.key(base, device=device, dtype=dtype, revision=revision)
        pipe = self._acquire(key, revision)
        originals: list[_TextSide] = []
        try:
            originals = _text_side(pipe)
            _give_copies(pipe, originals)
            load_trained(pipe, model_dir, unet_scale=unet_scale, text_scale=text_scale)
            yield pipe, manifest
        finally:
            try:
                pipe.unload_lora_weights()
                _restore(pipe, originals)
            except BaseException:
                self._release(key, broken=True)
                raise
            self._release(key, broken=False)


# ---- the text side a trained folder changes ----------------------------------------------------------

_TEXT_PAIRS = (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2"))


@dataclass
class _TextSide:
    tokenizer_name: str
    tokenizer: Any
    encoder: Any
    embedding: torch.nn.Module
    vocab_size: int


def _text_side(pipe: SDPipeline) -> list[_TextSide]:
    sides = []
    for tokenizer_name, encoder_name in _TEXT_PAIRS[: 2 if pipeline_kind(pipe) == "sdxl" else 1]:
        encoder = getattr(pipe, encoder_name)
        sides.append(
            _TextSide(
                tokenizer_name,
                getattr(pipe, tokenizer_name),
                encoder,
                encoder.get_input_embeddings(),
                int(encoder.config.vocab_size),
            )
        )
    return sides


def _give_copies(pipe: SDPipeline, sides: list[_TextSide]) -> None:
    """The job's tokens go into copies of the tokenizers; the originals are never modified."""
    for side in sides:
        setattr(pipe, side.tokenizer_name, copy.deepcopy(side.tokenizer))


def _restore(pipe: SDPipeline, sides: list[_TextSide]) -> None:
    for side in sides:
        setattr(pipe, side.tokenizer_name, side.tokenizer)
        side.encoder.set_input_embeddings(side.embedding)
        side.encoder.config.vocab_size = side.vocab_size
