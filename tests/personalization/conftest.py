"""Shared, expensive fixtures of the personalization tests: built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from personalization.tiny import build_tiny_model


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
