"""What a training run is asked to do and what it reports: settings, progress events, the result.

The fingerprint covers every setting that changes the numbers a run computes: a resumed run
must match it, so a checkpoint is never continued under other settings or data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from personalization import artifacts, progress
from personalization.progress import StepProgress

Method = Literal["identity", "multiconcept"]

# Every variant is one VAE encode per photo at setup and its latents stay in memory.
MAX_AUGMENTATION_VARIANTS = 16

# The methods' learning rates per parameter group. multiconcept: MagiCapture's official run
# (train_magicapture.sh: --learning_rate_ti=5e-4 --learning_rate_unet=1e-4 --learning_rate_text=1e-5
# with --scale_lr, which multiplies each by gradient_accumulation_steps (4) x batch size (1):
# lora_diffusion_/magicapture_train.py lines 1231-1236; --continue_inversion_lr=1e-4 is used as
# given, line 1412). identity: LIPE publishes no code; 1e-4 is the diffusers DreamBooth-LoRA rate.
DEFAULT_RATES: dict[str, dict[str, float]] = {
    "identity": {"unet_lora": 1e-4},
    "multiconcept": {"unet_lora": 4e-4, "text_lora": 4e-5, "embeddings": 2e-3, "joint_embeddings": 1e-4},
}
# Parameter group -> the setting that overrides its rate.
_RATE_SETTINGS = {
    "unet_lora": "unet_lr",
    "text_lora": "text_lr",
    "embeddings": "embedding_lr",
    "joint_embeddings": "joint_embedding_lr",
}


class TrainingError(ValueError):
    """A configuration or state training refuses to start from, with the reason."""


@dataclass
class TrainConfig:
    method: Method
    base_model: str
    images: Path
    out: Path
    style_images: Path | None = None
    steps: int | None = None  # total; default 800 (identity) or 1200 + 1500 (multiconcept)
    phase1_steps: int | None = None  # multiconcept: embeddings-only steps (default 4/9 of the total)
    rank: int = 4
    lora_alpha: float | None = None  # default: the rank (scale 1)
    # Learning rates; None takes the method's default (DEFAULT_RATES above, with their sources).
    unet_lr: float | None = None
    text_lr: float | None = None  # multiconcept phase 2: text-encoder LoRA
    embedding_lr: float | None = None  # multiconcept phase 1: the new token embeddings
    joint_embedding_lr: float | None = None  # multiconcept phase 2: the new token embeddings
    weight_decay: float = 1e-3  # identity's LoRA, every multiconcept phase-2 group (none in phase 1)
    max_grad_norm: float = 1.0  # identity, and multiconcept phase 2 (phase 1 is not clipped)
    embedding_norm_target: float = 0.4  # multiconcept phase 1: clip_ti_decay's target norm
    style_loss_weight: float = 2.0  # lambda_style: reference and composed terms, first half of a phase
    joint_max_timestep: float = 0.8  # multiconcept phase 2 samples t < this x T (every term)
    augmentation_variants: int = 4  # flip / colour-jitter variants per photo, each encoded once (0: off)
    batch_size: int = 1
    seed: int = 0
    prior_preservation: bool | None = None  # identity only; default on
    num_class_images: int = 100
    prior_loss_weight: float = 1.0
    class_image_steps: int = 30
    cache_dir: Path | None = None
    attention_loss_weight: float = 2.5
    identity_loss_weight: float = 0.25
    identity_max_timestep: float = 0.8
    init_word: str | None = None  # [V1] starts from this word's embedding (default: the class word)
    gradient_checkpointing: bool = False
    compile: bool = False
    mixed_precision: Literal["auto", "no", "bf16"] = "auto"
    device: str | None = None
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    preview_every: int = 0
    preview_steps: int = 20
    validation_repeats: int = 2  # fixed-draw reconstruction loss before and after (0: off)
    resume: bool = False
    # The size the photos must have been prepared at (a preset's); None accepts the prepared size.
    resolution: int | None = None

    def total_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        return 800 if self.method == "identity" else 1200 + 1500

    def embedding_steps(self) -> int:
        if self.method == "identity":
            return 0
        if self.phase1_steps is not None:
            return self.phase1_steps
        return 1200 if self.steps is None else round(self.total_steps() * 1200 / 2700)

    def learning_rate(self, group: str) -> float:
        """The rate of a parameter group (unet_lora, text_lora, embeddings, joint_embeddings): the
        one set, else the method's default."""
        chosen: float | None = getattr(self, _RATE_SETTINGS[group])
        return chosen if chosen is not None else DEFAULT_RATES[self.method][group]

    def uses_prior(self) -> bool:
        """LIPE's prior preservation: on by default for the identity method, never for multiconcept."""
        return self.method == "identity" and self.prior_preservation is not False

    def hyperparameters(self) -> dict[str, Any]:
        # resolution is a check on the data, whose own resolution the manifest and dataset hash record.
        skip = {"base_model", "images", "style_images", "out", "resume", "device", "cache_dir", "resolution"}
        values = {key: value for key, value in dataclasses.asdict(self).items() if key not in skip}
        values.update(steps=self.total_steps(), phase1_steps=self.embedding_steps(), lora_alpha=self.alpha())
        for group, key in _RATE_SETTINGS.items():
            values[key] = self.learning_rate(group) if group in DEFAULT_RATES[self.method] else None
        values["prior_preservation"] = self.uses_prior()
        return {key: str(value) if isinstance(value, Path) else value for key, value in values.items()}

    def alpha(self) -> float:
        return float(self.lora_alpha if self.lora_alpha is not None else self.rank)

    def validate(self) -> None:
        if self.method not in ("identity", "multiconcept"):
            raise TrainingError(f"unknown method {self.method!r} (identity or multiconcept)")
        if self.method == "multiconcept" and self.style_images is None:
            raise TrainingError("multiconcept needs --style-images (a folder prepared with --style)")
        if self.method == "identity" and self.style_images is not None:
            raise TrainingError("style images belong to the multiconcept method")
        if self.total_steps() < 1 or self.batch_size < 1 or self.rank < 1:
            raise TrainingError("steps, batch size and rank must be positive")
        if self.method == "multiconcept" and not 0 <= self.embedding_steps() <= self.total_steps():
            raise TrainingError("phase-1 steps must lie between 0 and the total steps")
        if not 0 <= self.augmentation_variants <= MAX_AUGMENTATION_VARIANTS:
            raise TrainingError(f"augmentation variants must lie between 0 and {MAX_AUGMENTATION_VARIANTS}")
        if not 0 < self.joint_max_timestep <= 1:
            raise TrainingError("the phase-2 timestep limit is a fraction of T in (0, 1]")


@dataclass(frozen=True)
class TrainProgress(StepProgress):
    """A training step (phase identity | embeddings | joint); the callback may return "stop" to end
    training cleanly after it, with a checkpoint to resume from (see personalization.progress)."""

    losses: dict[str, float]
    learning_rates: dict[str, float]
    preview: Image.Image | None = None
    notices: tuple[str, ...] = ()


ProgressCallback = progress.ProgressCallback[TrainProgress]


@dataclass
class TrainResult:
    status: Literal["completed", "stopped"]
    steps: int
    out_dir: Path
    final_losses: dict[str, float]
    notices: list[str]
    checkpoint: Path | None = None
    manifest: artifacts.TrainedManifest | None = None
    validation_losses: dict[str, dict[str, float]] = field(default_factory=dict)


# Settings that do not change the numbers a run computes: a resumed run may differ in them.
_NOT_FINGERPRINTED = {
    "checkpoint_every",
    "keep_checkpoints",
    "preview_every",
    "preview_steps",
    "compile",
    "gradient_checkpointing",
}


def fingerprint(config: TrainConfig, dataset_hashes: list[str]) -> str:
    settings = {
        key: value for key, value in config.hyperparameters().items() if key not in _NOT_FINGERPRINTED
    }
    payload = json.dumps([config.base_model, settings, dataset_hashes], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()
