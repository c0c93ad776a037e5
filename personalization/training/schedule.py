"""How each phase optimises: parameter groups, learning-rate decay, gradient clipping, the
embedding-norm control, lambda_style and the timestep range.

multiconcept follows MagiCapture's official run (github.com/junhahyung/MagiCapture,
train_magicapture.sh and lora_diffusion_/magicapture_train.py; line numbers are that file's):
- learning rates: config.DEFAULT_RATES (the script's rates after --scale_lr);
- linear decay to 0 within each phase (--lr_scheduler linear, no warm-up; diffusers'
  get_scheduler over max_train_steps_ti, then over max_train_steps_tuning: lines 1340-1345 and
  1449-1454). The official loops step the scheduler before each update (lines 647 and 890), so
  update k of a phase of N steps (k from 0) uses rate x (N - k - 1) / N; so does this one;
- phase 1: no weight decay (--weight_decay_ti=0.000), no gradient clipping (train_inversion has
  none), and clip_ti_decay after every update (lines 693-710): the new embedding rows are
  rescaled to norm n + lambda (0.4 - n), lambda = min(1, 100 x the update's rate), n their norm;
- phase 2: weight decay 1e-3 on every group (--weight_decay_lora=0.001, one AdamW over all
  groups, line 1441), the gradient norm of all trainable parameters clipped at 1.0 (lines 927-929);
- lambda_style = 2 on the reconstruction terms of reference and composed samples while the
  phase is in its first half (line 516: `cur_t < 0.5`, cur_t the phase's progress, lines 660, 905);
- every phase-2 term at t < 0.8T (t_mutliplier=0.8, line 901, bounds both of its timestep draws,
  lines 376-390); phase 1 draws over all of T.
identity (LIPE publishes no code) keeps a constant rate, weight decay on its LoRA and clipping.

Every value here is a function of the step, with no state of its own, so a resumed run computes
exactly what the uninterrupted run did.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional

from personalization.training.config import TrainConfig

# The sample kinds lambda_style weighs: the official "style" (reference) and "both" (composed).
STYLED_KINDS = ("reference", "composed")


def phase_span(config: TrainConfig, phase: str) -> tuple[int, int]:
    """(first step, number of steps) of a phase."""
    if phase == "embeddings":
        return 0, config.embedding_steps()
    if phase == "joint":
        first = config.embedding_steps()
        return first, config.total_steps() - first
    return 0, config.total_steps()


def _progress(config: TrainConfig, phase: str, step: int) -> tuple[int, int]:
    first, length = phase_span(config, phase)
    return step - first, max(length, 1)


def rate_factor(config: TrainConfig, phase: str, step: int) -> float:
    """The share of its base rate every group uses at `step` (0-based, over the whole run)."""
    if config.method != "multiconcept":
        return 1.0
    done, length = _progress(config, phase, step)
    return max(0.0, (length - done - 1) / length)


def style_weight(config: TrainConfig, phase: str, step: int) -> float:
    """lambda_style at `step`: the configured weight in the first half of a multiconcept phase."""
    if config.method != "multiconcept":
        return 1.0
    done, length = _progress(config, phase, step)
    return config.style_loss_weight if done / length < 0.5 else 1.0


def timestep_fraction(config: TrainConfig, phase: str) -> float:
    """Training timesteps are drawn from [0, fraction x T)."""
    return config.joint_max_timestep if phase == "joint" else 1.0


def clips_gradients(phase: str) -> bool:
    return phase != "embeddings"


def parameter_groups(
    phase: str,
    config: TrainConfig,
    unet_lora: list[nn.Parameter],
    text_lora: list[nn.Parameter],
    rows: list[nn.Parameter],
) -> list[dict[str, Any]]:
    """AdamW's groups for a phase, each named and with its undecayed rate as `base_lr`."""
    if phase == "identity":
        groups = [("unet_lora", unet_lora, config.learning_rate("unet_lora"), config.weight_decay)]
    elif phase == "embeddings":
        groups = [("embeddings", rows, config.learning_rate("embeddings"), 0.0)]
    else:
        groups = [
            ("unet_lora", unet_lora, config.learning_rate("unet_lora"), config.weight_decay),
            ("text_lora", text_lora, config.learning_rate("text_lora"), config.weight_decay),
            ("embeddings", rows, config.learning_rate("joint_embeddings"), config.weight_decay),
        ]
    return [
        {"name": name, "params": params, "lr": rate, "base_lr": rate, "weight_decay": decay}
        for name, params, rate, decay in groups
    ]


def set_rates(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def pull_embedding_norms(rows: torch.Tensor, rate: float, target: float) -> None:
    """clip_ti_decay: each new embedding row's norm moves towards `target` by min(1, 100 x rate)
    of the way, its direction kept; keeps the learned tokens at the vocabulary's scale."""
    with torch.no_grad():
        norms = rows.norm(dim=-1, keepdim=True)
        pull = min(1.0, 100 * rate)
        rows.copy_(functional.normalize(rows, dim=-1) * (norms + pull * (target - norms)))
