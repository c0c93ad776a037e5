"""The worker's pipeline cache on the tiny models (CPU): no reload, a clean base after every job,
eviction within the budget."""

from __future__ import annotations

import gc
import os
import shutil
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from personalization.artifacts import ArtifactError
from personalization.cache import CacheError, PipelineCache, pipeline_bytes
from personalization.dataset import PreparedDataset
from personalization.generate import GenerationSettings, generate, load_generator
from personalization.models import load_pipeline
from personalization.progress import Cancelled
from personalization.training import TrainConfig, train
from tests.personalization.conftest import tiny_image

GIB = 2**30
PLAIN = "a photo of a person"


@pytest.fixture(scope="module")
def identity_folder(
    tiny_sd: Path, prepared_source: PreparedDataset, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A second trained model, of the other method: UNet LoRA only and one token."""
    out = tmp_path_factory.mktemp("cache") / "identity"
    config = TrainConfig(
        method="identity",
        base_model=str(tiny_sd),
        images=prepared_source.root,
        out=out,
        steps=2,
        unet_lr=1e-2,
        prior_preservation=False,  # any trained folder of this method will do
        checkpoint_every=0,
        validation_repeats=0,
    )
    train(config)
    return out


def _images(pipe: Any, manifest: Any) -> list[np.ndarray]:
    settings = GenerationSettings(
        steps=3, count=2, seed=4, style="style" if "style" in manifest.tokens else None
    )
    return [np.asarray(image) for image in generate(pipe, manifest, settings).images]


def _fresh(folder: Path) -> list[np.ndarray]:
    return _images(*load_generator(folder, device="cpu"))


def test_the_second_use_of_a_base_does_not_reload_it(tiny_sd: Path, tiny_lora_folder: Path) -> None:
    cache = PipelineCache(max_bytes=4 * GIB)
    with cache.base(tiny_sd) as first:
        pass
    with cache.base(tiny_sd) as second, pytest.raises(CacheError, match="in use by another job"):
        assert second is first
        with cache.base(tiny_sd):
            pass  # one job at a time per pipeline
    with cache.trained(tiny_lora_folder) as (pipe, manifest):  # the manifest names the same base
        assert pipe is first and manifest.tokens["identity"] == "<sks>"
    assert (cache.loads, cache.hits, len(cache)) == (1, 2, 1)


def test_models_in_turn_match_freshly_loaded_pipelines_bit_for_bit(
    tiny_sd: Path, tiny_lora_folder: Path, identity_folder: Path
) -> None:
    """Model A (multiconcept: UNet and text LoRA, two tokens), then B (identity), then none: each
    result equals a freshly loaded pipeline's, so nothing of one job leaks into the next."""
    cache = PipelineCache(max_bytes=4 * GIB)
    with cache.trained(tiny_lora_folder) as (pipe, manifest):
        first = _images(pipe, manifest)
    with cache.trained(identity_folder) as (pipe, manifest):
        second = _images(pipe, manifest)
    with cache.base(tiny_sd) as pipe:
        plain = tiny_image(pipe, PLAIN)
        assert not any("lora" in name for name in pipe.unet.state_dict())
        assert "<sks>" not in pipe.tokenizer.get_vocab()
    with cache.trained(tiny_lora_folder) as (pipe, manifest):
        again = _images(pipe, manifest)
    assert cache.loads == 1
    fresh_first = _fresh(tiny_lora_folder)
    assert all(np.array_equal(a, b) for a, b in zip(first, fresh_first, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(again, fresh_first, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(second, _fresh(identity_folder), strict=True))
    assert np.array_equal(plain, tiny_image(load_pipeline(tiny_sd, device="cpu"), PLAIN))
    assert not np.array_equal(first[0], second[0])


def test_a_job_that_fails_or_is_cancelled_leaves_the_base_clean(
    tiny_sd: Path, tiny_lora_folder: Path, tiny_xl_lora_folder: Path
) -> None:
    cache = PipelineCache(max_bytes=4 * GIB)
    with pytest.raises(Cancelled), cache.trained(tiny_lora_folder) as (pipe, manifest):
        generate(pipe, manifest, GenerationSettings(steps=3), progress=lambda event: "stop")
    with (
        pytest.raises(ArtifactError, match="trained on a sdxl model"),
        cache.trained(tiny_xl_lora_folder, base_model=tiny_sd),
    ):
        pass
    with cache.base(tiny_sd) as pipe:
        assert np.array_equal(
            tiny_image(pipe, PLAIN), tiny_image(load_pipeline(tiny_sd, device="cpu"), PLAIN)
        )
    assert cache.loads == 1


def test_eviction_within_the_budget_frees_the_pipeline(tiny_sd: Path, tiny_sdxl: Path) -> None:
    sizes = {path: pipeline_bytes(load_pipeline(path, device="cpu")) for path in (tiny_sd, tiny_sdxl)}
    cache = PipelineCache(max_bytes=sizes[tiny_sd] + sizes[tiny_sdxl] - 1)  # one fits, not both
    with cache.base(tiny_sd) as pipe:
        gone = weakref.ref(pipe)
    del pipe
    with cache.base(tiny_sdxl):
        pass
    gc.collect()
    assert gone() is None and cache.evictions == 1  # the least recently used made room
    assert cache.used_bytes == sizes[tiny_sdxl]

    # Larger than the whole budget: still served, then dropped when the job ends.
    tight = PipelineCache(max_bytes=1)
    with tight.base(tiny_sd) as pipe:
        assert tiny_image(pipe, PLAIN).std() > 0
        held = weakref.ref(pipe)
    del pipe
    gc.collect()
    assert held() is None and len(tight) == 0 and tight.used_bytes == 0


def test_a_rebuilt_model_folder_is_not_served_from_the_cache(tiny_sd: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_sd, tmp_path / "model")
    cache = PipelineCache(max_bytes=4 * GIB)
    before = cache.key(copy)
    weights = next(copy.rglob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert cache.key(copy) != before
    assert cache.key(copy, dtype=None) == cache.key(copy)
    assert before.kind == "sd15" and before.device == "cpu" and before.dtype == "torch.float32"
