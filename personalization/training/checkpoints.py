"""Checkpoints: the trainable tensors, the optimizer, the random generator and the loss window.

They hold everything a run's future depends on, so `--resume` continues to bit-identical
weights; the fingerprint refuses a checkpoint made under other settings or data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from personalization import artifacts
from personalization.training.config import TrainingError

CHECKPOINTS_DIR = "checkpoints"


def checkpoint_dir(out: Path) -> Path:
    return out / CHECKPOINTS_DIR


def save_checkpoint(out: Path, step: int, payload: dict[str, Any], *, keep: int) -> Path:
    """Writes `step-NNNNNNN.pt` atomically (a crash never leaves a truncated one), keeping the last `keep`."""
    folder = checkpoint_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.pt"
    partial = path.with_suffix(".partial")
    torch.save({"step": step, **payload}, partial)
    partial.replace(path)
    for old in sorted(folder.glob("step-*.pt"))[:-keep]:
        old.unlink()
    return path


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted(checkpoint_dir(out).glob("step-*.pt"))
    return found[-1] if found else None


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any]:
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if payload["fingerprint"] != fingerprint:
        raise TrainingError(
            f"{path} belongs to a run with other settings or data: resume needs the same configuration"
        )
    return payload


def check_out_dir(out: Path, *, resume: bool) -> None:
    """A fresh run never overwrites an earlier one; a resumed run needs a checkpoint and no result yet."""
    folder = checkpoint_dir(out)
    has_checkpoints = folder.is_dir() and any(folder.glob("step-*.pt"))
    if resume and not has_checkpoints:
        raise TrainingError(f"nothing to resume in {out}: it has no checkpoint")
    if resume and (out / artifacts.MANIFEST_NAME).exists():
        raise TrainingError(f"{out} holds a finished run: there is nothing left to resume")
    if not resume and (has_checkpoints or (out / artifacts.MANIFEST_NAME).exists()):
        raise TrainingError(
            f"{out} holds an earlier run: pass --resume to continue it, or choose another --out"
        )
