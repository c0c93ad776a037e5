"""Base-model loading and the tiny model: the same loader path as real weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from PIL import Image

from personalization.edit import encode_image
from personalization.models import (
    KindChoice,
    ModelLoadError,
    detect_kind,
    load_pipeline,
    pick_device,
    pipeline_kind,
)
from personalization.tiny import build_tiny_pipeline, calibration_batch
from tests.personalization.conftest import FACES, tiny_image


def test_detects_and_loads_sd15(tiny_sd: Path) -> None:
    assert detect_kind(tiny_sd) == "sd15"
    pipe = load_pipeline(tiny_sd, device="cpu")
    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipeline_kind(pipe) == "sd15"
    assert pipe.unet.dtype == torch.float32
    assert pipe.device.type == "cpu"


def test_detects_and_loads_sdxl(tiny_sdxl: Path) -> None:
    assert detect_kind(tiny_sdxl) == "sdxl"
    pipe = load_pipeline(tiny_sdxl, device="cpu")
    assert isinstance(pipe, StableDiffusionXLPipeline)
    assert pipeline_kind(pipe) == "sdxl"


def test_dtype_and_kind_are_overridable(tiny_sd: Path) -> None:
    pipe = load_pipeline(tiny_sd, device="cpu", dtype=torch.bfloat16, kind="sd15")
    assert pipe.unet.dtype == torch.bfloat16
    assert pipe.text_encoder.dtype == torch.bfloat16


def test_pick_device_honours_an_explicit_choice() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_folder_without_model_index_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no model_index\.json"):
        load_pipeline(tmp_path)


@pytest.mark.parametrize("kind", ["auto", "sd15"])
def test_a_model_neither_on_disk_nor_on_the_hub_is_one_clear_error(
    kind: KindChoice, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # this machine has no hub; never wait for one
    missing = tmp_path / "no-such-model"
    with pytest.raises(
        ModelLoadError, match=r"cannot load the base model .*no-such-model.* not a local model folder"
    ):
        load_pipeline(missing, kind=kind)


def test_a_model_folder_missing_weights_is_one_clear_error(tiny_sd: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd, broken)
    for weights in (broken / "unet").glob("diffusion_pytorch_model*"):
        weights.unlink()
    with pytest.raises(ModelLoadError, match=r"cannot load the base model folder .*broken"):
        load_pipeline(broken)


def test_unsupported_pipeline_class_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ModelLoadError, match="FluxPipeline"):
        detect_kind(tmp_path)


def test_tiny_model_is_deterministic_and_generates(tiny_sd: Path) -> None:
    first = build_tiny_pipeline(seed=0).unet.state_dict()
    second = build_tiny_pipeline(seed=0).unet.state_dict()
    other = build_tiny_pipeline(seed=1).unet.state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)

    pipe = load_pipeline(tiny_sd, device="cpu")
    image = tiny_image(pipe, "a photo of a person")
    assert image.shape == (64, 64, 3)
    assert np.isfinite(image).all()


def test_tiny_tokenizer_represents_any_prompt_and_new_tokens(tiny_sd: Path) -> None:
    pipe = load_pipeline(tiny_sd, device="cpu")
    tokenizer = pipe.tokenizer
    assert tokenizer.model_max_length == 77
    unknown = tokenizer.unk_token_id
    ids = tokenizer("a photo of <sks> person, head turned 45° left!").input_ids
    assert unknown not in ids[1:-1]
    tokenizer.add_tokens(["<sks>"])
    ids = tokenizer("a photo of <sks> person").input_ids
    assert tokenizer.convert_tokens_to_ids("<sks>") in ids


def test_build_tiny_model_cli(tmp_path: Path, cli) -> None:
    out = tmp_path / "tiny-xl"
    done = cli("build-tiny-model", str(out), "--xl")
    assert done.returncode == 0, done.stderr
    assert detect_kind(out) == "sdxl"
    again = cli("build-tiny-model", str(out))
    assert again.returncode == 2
    assert "not empty" in again.stderr


@pytest.mark.parametrize("fixture", ["tiny_sd", "tiny_sdxl"])
def test_tiny_vae_scaling_factor_gives_unit_variance_latents(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    """The saved factor is measured on the builder's calibration photos; a photo outside that set
    (person A's face) must land near unit variance too, and the posterior must be narrow so that
    training's sampled latents are as unit-variance as editing's posterior means."""
    pipe = load_pipeline(request.getfixturevalue(fixture), device="cpu")
    factor = pipe.vae.config.scaling_factor
    assert factor not in (0.18215, 0.13025)  # not SD's numbers, which were measured on SD's VAE
    with torch.no_grad():
        calibration = pipe.vae.encode(calibration_batch(64)).latent_dist
    assert abs(float((calibration.mean * factor).std()) - 1.0) < 1e-3
    assert float(calibration.std.max() * factor) < 0.1
    face = Image.open(FACES / "obama.jpg").convert("RGB")
    assert 0.5 < float(encode_image(pipe, face, (64, 64)).std()) < 2.0
