"""Portrait generation on the tiny models (CPU, 64 px): LoRA scales, prompts, batches, second pass, plugins.

The trained folders are `tiny_lora_folder` / `tiny_xl_lora_folder` (conftest): random peft
LoRA layers and identity/style token embeddings written through artifacts.write_artifacts
(diffusers' save_lora_weights) and applied with artifacts.load_trained.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from personalization import edit
from personalization.cli import main
from personalization.generate import (
    GenerationError,
    GenerationSettings,
    HiresMode,
    HiresSettings,
    _run_batches,
    generate,
    load_generator,
    load_plugin,
)
from personalization.models import load_pipeline
from personalization.progress import StepProgress
from personalization.prompts import PromptError, expand_prompt

PROMPT = "a photo of a person"


@pytest.fixture(scope="module")
def trained(tiny_lora_folder: Path) -> tuple[Any, Any]:
    return load_generator(tiny_lora_folder, device="cpu")


def _arrays(images: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(image).astype(np.int16) for image in images]


def test_lora_scale_zero_reproduces_the_base_model(trained: tuple[Any, Any], tiny_sd: Path) -> None:
    pipe, manifest = trained
    base = load_pipeline(tiny_sd, device="cpu")
    expected = base(
        PROMPT, num_inference_steps=4, generator=torch.Generator().manual_seed(7), output_type="np"
    ).images[0]
    off = generate(
        pipe, manifest, GenerationSettings(prompt=PROMPT, steps=4, seed=7, unet_scale=0, text_scale=0)
    )
    assert np.array_equal(np.asarray(off.images[0]), (expected * 255).round().astype(np.uint8))
    # The LoRA is not a no-op: at MagiCapture's default scales the same seed gives another image.
    on = generate(pipe, manifest, GenerationSettings(prompt=PROMPT, steps=4, seed=7))
    assert np.abs(_arrays(on.images)[0] - _arrays(off.images)[0]).mean() > 1.0


def test_prompts_name_the_trained_tokens(trained: tuple[Any, Any]) -> None:
    pipe, manifest = trained
    tokens = manifest.tokens
    assert expand_prompt("a photo of {identity} {class_word}", tokens, "person", style="style") == (
        "a photo of <sks> person in the <style1> style"
    )
    assert expand_prompt("{identity} in the {style} style, smiling", tokens, style="style") == (
        "<sks> in the <style1> style, smiling"
    )
    with pytest.raises(PromptError, match="no style token 'style2'"):
        expand_prompt("{identity}", tokens, style="style2")
    with pytest.raises(PromptError, match=r"\{pet\}"):
        expand_prompt("{identity} with {pet}", tokens)
    result = generate(pipe, manifest, GenerationSettings(style="style", steps=2, negative_prompt="blurry"))
    assert result.prompt == "a photo of <sks> person in the <style1> style"
    assert result.negative_prompt == "blurry"


def test_a_batch_is_one_call_and_each_image_keeps_its_seed(trained: tuple[Any, Any]) -> None:
    pipe, manifest = trained
    events: list[StepProgress] = []
    batch = generate(pipe, manifest, GenerationSettings(steps=3, count=3, seed=10), progress=events.append)
    assert batch.seeds == [10, 11, 12] and len(batch.images) == 3
    # One pipeline call for the three images: as many steps as the scheduler takes once.
    scheduler = copy.deepcopy(pipe.scheduler)
    scheduler.set_timesteps(3)
    assert len(events) == events[-1].total == len(scheduler.timesteps)
    alone = generate(pipe, manifest, GenerationSettings(steps=3, count=1, seed=11))
    # Batched matmuls round differently on CPU; the images match to a grey level or two.
    assert np.abs(_arrays(batch.images)[1] - _arrays(alone.images)[0]).max() <= 3
    assert np.abs(_arrays(batch.images)[0] - _arrays(batch.images)[1]).mean() > 1.0


def test_out_of_memory_splits_the_batch_and_keeps_the_order() -> None:
    sizes: list[int] = []

    def fits_two(part: list[int]) -> list[int]:
        sizes.append(len(part))
        if len(part) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [seed * 10 for seed in part]

    assert _run_batches([1, 2, 3, 4, 5], None, fits_two) == [10, 20, 30, 40, 50]
    assert sizes == [5, 2, 2, 1]
    sizes.clear()
    assert _run_batches([1, 2, 3], 1, fits_two) == [10, 20, 30] and sizes == [1, 1, 1]

    def broken(part: list[int]) -> list[int]:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        _run_batches([1, 2], None, broken)


@pytest.mark.parametrize("mode", ["latent", "image"])
def test_second_pass_doubles_the_resolution(trained: tuple[Any, Any], mode: HiresMode) -> None:
    pipe, manifest = trained
    phases: set[str] = set()
    settings = GenerationSettings(steps=4, hires=HiresSettings(scale=2.0, strength=0.5, mode=mode))
    result = generate(pipe, manifest, settings, progress=lambda event: phases.add(event.phase))
    assert [image.size for image in result.images] == [(128, 128)]
    assert phases == {"generate 1/2", "generate 2/2"}


def test_schedulers_are_selectable_and_restored(trained: tuple[Any, Any]) -> None:
    pipe, manifest = trained
    original = pipe.scheduler
    default = generate(pipe, manifest, GenerationSettings(steps=4))
    euler = generate(pipe, manifest, GenerationSettings(steps=4, scheduler="euler-a"))
    assert pipe.scheduler is original
    assert not np.array_equal(np.asarray(default.images[0]), np.asarray(euler.images[0]))
    with pytest.raises(GenerationError, match="unknown scheduler 'fast'"):
        generate(pipe, manifest, GenerationSettings(steps=4, scheduler="fast"))


PLUGINS = """
from PIL import Image, ImageOps


def upscale(image):
    return image.resize((image.width * 2, image.height * 2), Image.Resampling.LANCZOS)


def restore(image):
    return ImageOps.autocontrast(image)


def broken(image):
    return "not an image"
"""


def test_super_resolution_and_face_restoration_plugins_by_path(
    trained: tuple[Any, Any], tmp_path: Path
) -> None:
    pipe, manifest = trained
    plugin_file = tmp_path / "plugins.py"
    plugin_file.write_text(PLUGINS)
    plain = generate(pipe, manifest, GenerationSettings(steps=2, seed=3))
    settings = GenerationSettings(
        steps=2, seed=3, super_resolution=f"{plugin_file}:upscale", face_restoration=f"{plugin_file}:restore"
    )
    processed = generate(pipe, manifest, settings)
    upscaled = plain.images[0].resize((128, 128), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(processed.images[0]), np.asarray(ImageOps.autocontrast(upscaled)))

    with pytest.raises(GenerationError, match="does not exist"):
        load_plugin(f"{tmp_path / 'missing.py'}:upscale")
    with pytest.raises(GenerationError, match="no function 'sharpen'"):
        load_plugin(f"{plugin_file}:sharpen")
    with pytest.raises(GenerationError, match=r"FILE\.py:FUNCTION"):
        load_plugin(str(plugin_file))
    with pytest.raises(GenerationError, match="returned str"):
        generate(pipe, manifest, GenerationSettings(steps=2, super_resolution=f"{plugin_file}:broken"))


def test_bad_settings_are_refused(trained: tuple[Any, Any]) -> None:
    pipe, manifest = trained
    with pytest.raises(GenerationError, match="count"):
        generate(pipe, manifest, GenerationSettings(count=0))
    with pytest.raises(GenerationError, match="multiple of 8"):
        generate(pipe, manifest, GenerationSettings(width=100))
    with pytest.raises(GenerationError, match="strength"):
        generate(pipe, manifest, GenerationSettings(hires=HiresSettings(strength=0.0)))


def test_sdxl_generates_natively_and_edits(tiny_xl_lora_folder: Path) -> None:
    """SDXL: the native size without a second pass, and the editor's SDXL conditioning path."""
    pipe, manifest = load_generator(tiny_xl_lora_folder, device="cpu")
    native = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
    result = generate(pipe, manifest, GenerationSettings(steps=2, count=2))
    assert [image.size for image in result.images] == [(native, native)] * 2
    photo = result.images[0]
    settings = edit.EditSettings(
        source_prompt="a photo of <sks> person",
        target_prompt="a photo of <sks> person, smiling with teeth",
        identifier="<sks>",
        steps=4,
        mask_steps=2,
        dilate_px=1,
        feather_px=1,
        mask_threshold=0.7,
    )
    edited = edit.edit_image(pipe, photo, settings)
    region = np.asarray(edited.region) > 0
    assert 0 < region.sum() < region.size
    assert np.array_equal(np.asarray(edited.image)[~region], np.asarray(photo)[~region])


def test_generate_from_the_command_line(
    tiny_lora_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "portraits"
    args = ["generate", "--model", str(tiny_lora_folder), "--out", str(out), "--style", "--count", "2"]
    args += ["--seed", "5", "--steps", "2", "--scheduler", "ddim", "--unet-scale", "0.5"]
    assert main(args) == 0
    record = json.loads((out / "generation.json").read_text())
    assert record["prompt"] == "a photo of <sks> person in the <style1> style"
    assert record["seeds"] == [5, 6] and record["files"] == ["seed-5.png", "seed-6.png"]
    assert record["settings"]["unet_scale"] == 0.5 and record["settings"]["text_scale"] == 0.9
    assert all((out / name).is_file() for name in record["files"])
    capsys.readouterr()
    assert main(["generate", "--model", str(tmp_path), "--out", str(out)]) == 2
    assert "manifest.json is missing" in capsys.readouterr().err
