"""Shared, expensive fixtures of the personalization tests: built once per session."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from personalization.dataset import PreparedDataset
from personalization.prepare import PrepareOptions, prepare
from personalization.tiny import build_tiny_model

REPO_ROOT = Path(__file__).resolve().parents[2]
FACES = REPO_ROOT.parent / "shared" / "data" / "faces"
TRAIN_RESOLUTION = 64


def tiny_image(pipe: Any, prompt: str) -> np.ndarray:
    """One seeded 64 px, 3-step image as an array: the tiny models' comparable output."""
    image: np.ndarray = pipe(
        prompt,
        num_inference_steps=3,
        height=TRAIN_RESOLUTION,
        width=TRAIN_RESOLUTION,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
    ).images[0]
    return image


def identity_train_args(base_model: Path, images: Path, out: Path, *extra: str) -> list[str]:
    """`python -m personalization` arguments of an identity training: what the CLI tests share."""
    model = ["--base-model", str(base_model), "--images", str(images), "--out", str(out)]
    return ["train", "--method", "identity", *model, *extra]


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    # The CI machine has two cores shared with other jobs; one thread also keeps CPU results bit-stable.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sdxl", xl=True)


@pytest.fixture(scope="session")
def prepared_source(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    """Person A's three photos, prepared at the tiny model's 64 px."""
    photos = tmp_path_factory.mktemp("source-photos")
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg"):
        shutil.copy(FACES / name, photos / name)
    out = tmp_path_factory.mktemp("source-prepared")
    return prepare(photos, out, PrepareOptions(resolution=TRAIN_RESOLUTION, force=True)).dataset


@pytest.fixture(scope="session")
def prepared_style(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    """Two photos of person B as the style set (whole-frame crops, the face masked out)."""
    photos = tmp_path_factory.mktemp("style-photos")
    for name in ("biden.jpg", "biden2.jpg"):
        shutil.copy(FACES / name, photos / name)
    out = tmp_path_factory.mktemp("style-prepared")
    return prepare(photos, out, PrepareOptions(resolution=TRAIN_RESOLUTION, style=True, force=True)).dataset


@pytest.fixture(scope="session")
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs `python -m personalization ARGS...` from the repository root."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "personalization", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )

    return run


def _write_lora_folder(base: Path, out: Path, *, xl: bool = False) -> Path:
    """A trained-model folder made without the trainer: peft LoRA layers with random (non-zero)
    weights on the UNet attention and the text encoder(s), an identity and a style token, saved
    through artifacts.write_artifacts (diffusers' save_lora_weights) with a manifest. Tests that
    need *a* LoRA to load (scales, editing plumbing) use it; it carries no learned identity."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from personalization.artifacts import TrainedManifest, write_artifacts, write_manifest
    from personalization.models import ModelKind, load_pipeline

    pipe = load_pipeline(base, device="cpu")
    encoders = ["text_encoder", "text_encoder_2"] if xl else ["text_encoder"]
    unet_config = LoraConfig(
        r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"]
    )
    text_config = LoraConfig(
        r=4, lora_alpha=4, init_lora_weights=False, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        pipe.unet.add_adapter(unet_config)
        for name in encoders:
            getattr(pipe, name).add_adapter(text_config)
        embeddings = {
            role: (token, [torch.randn(getattr(pipe, name).config.hidden_size) * 0.02 for name in encoders])
            for role, token in (("identity", "<sks>"), ("style", "<style1>"))
        }
    kind: ModelKind = "sdxl" if xl else "sd15"
    files = write_artifacts(
        out,
        kind=kind,
        unet_lora=get_peft_model_state_dict(pipe.unet),
        text_lora={name: get_peft_model_state_dict(getattr(pipe, name)) for name in encoders},
        lora_alpha=4,
        embeddings=embeddings,
        lora_metadata={"unet": unet_config.to_dict(), **{name: text_config.to_dict() for name in encoders}},
    )
    manifest = TrainedManifest(
        base_model=str(base),
        base_model_revision=None,
        model_kind=kind,
        method="multiconcept",
        tokens={"identity": "<sks>", "style": "<style1>"},
        class_word="person",
        resolution=64,
        hyperparameters={"rank": 4, "source": "random peft LoRA (test fixture, not trained)"},
        dataset_hash="none",
        final_losses={},
        wall_time_s=0.0,
        device="cpu",
        default_scales={"unet": 0.6, "text": 0.9},
        files=files,
    )
    write_manifest(out, manifest)
    return out


@pytest.fixture(scope="session")
def tiny_lora_folder(tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_lora_folder(tiny_sd, tmp_path_factory.mktemp("trained") / "tiny-lora")


@pytest.fixture(scope="session")
def tiny_xl_lora_folder(tiny_sdxl: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_lora_folder(tiny_sdxl, tmp_path_factory.mktemp("trained") / "tiny-xl-lora", xl=True)
