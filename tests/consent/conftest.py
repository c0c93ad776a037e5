"""The consent tests store files: each gets its own private storage folder (tests/fixtures/consent.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_storage(storage_root: Path) -> Path:
    return storage_root
