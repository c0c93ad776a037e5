"""Shared, expensive fixtures of the personalization tests: built once per session."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from personalization.dataset import PreparedDataset
from personalization.prepare import PrepareOptions, prepare
from personalization.tiny import build_tiny_model

REPO_ROOT = Path(__file__).resolve().parents[2]
FACES = REPO_ROOT.parent / "shared" / "data" / "faces"
TRAIN_RESOLUTION = 64


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
