"""The training losses of both methods, as plain tensor functions (tested on their own)."""

from __future__ import annotations

import torch
from torch.nn import functional


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample ||(target - prediction) * M||^2, rescaled by total area / mask area.

    MagiCapture's L_s_mask / L_r_mask / L_c_mask. The rescaling (as in the official code) keeps
    a small face mask from shrinking the loss. prediction/target (B, C, H, W), mask (B, 1, H, W).
    Returns (B,).
    """
    if mask.shape[0] != prediction.shape[0] or mask.shape[-2:] != prediction.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match prediction {tuple(prediction.shape)}")
    difference = (prediction.float() - target.float()) * mask.float()
    area = mask.shape[-2] * mask.shape[-1]
    mask_area = mask.float().sum(dim=(1, 2, 3)).clamp_min(1e-6)
    return difference.pow(2).mean(dim=(1, 2, 3)) * (area / mask_area)


def min_max_scale(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scales each (H, W) map to [0, 1]: refocusing compares the attention's shape, not its mass."""
    flat = maps.flatten(start_dim=-2)
    low = flat.min(dim=-1, keepdim=True).values
    high = flat.max(dim=-1, keepdim=True).values
    return ((flat - low) / (high - low + eps)).view_as(maps)


def attention_refocus_loss(
    maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """MagiCapture's L_attn as its official code computes it (lora_diffusion_/magicapture_train.py,
    `loss_step`, lines 542-582).

    Each layer's and head's map of token k is upsampled bilinearly to the masks' size and min-max
    scaled on its own (a weak head counts as much as a strong one); where token k's mask is at
    least 0.5 the scaled maps are set to 1; their mean over the maps is compared with the mask by
    MSE. Inside the mask the term is constant, so only attention outside a token's own region is
    penalised: the paper's ||(S(A_k) - M_k) * (1 - M_k)||^2. A sample's tokens are averaged, not
    summed (the official `.mean()` over them), so a composed sample, which has both tokens, weighs
    as much as a source or reference sample, which has one.

    maps (B, K, M, h, w): the M cross-attention maps of token k; masks (B, K, H, W): where token k
    belongs (identity -> face, style -> not the face); valid (B, K) switches pairs off. Returns the
    mean over the samples that have a valid pair.
    """
    batch, tokens, count = maps.shape[:3]
    size = masks.shape[-2:]
    upsampled = functional.interpolate(
        maps.float().flatten(0, 1), size=size, mode="bilinear", align_corners=False
    )  # (B*K, M, H, W)
    scaled = min_max_scale(upsampled).view(batch, tokens, count, *size).mean(dim=2)
    target = masks.float()
    compared = torch.where(target >= 0.5, torch.ones_like(target), scaled)
    per_pair = (compared - target).pow(2).mean(dim=(-2, -1))  # (B, K)
    weights = valid.float() if valid is not None else torch.ones_like(per_pair)
    pairs = weights.sum(dim=1)
    per_sample = (per_pair * weights).sum(dim=1) / pairs.clamp_min(1.0)
    return per_sample.sum() / (pairs > 0).sum().clamp_min(1)


def predicted_original(
    noisy: torch.Tensor,
    model_output: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    timesteps: torch.Tensor,
    prediction_type: str,
) -> torch.Tensor:
    """x0 estimated from z_t by Tweedie's formula (epsilon or v prediction)."""
    alpha = alphas_cumprod.to(noisy.device)[timesteps].float().view(-1, 1, 1, 1)
    if prediction_type == "epsilon":
        return (noisy.float() - (1 - alpha).sqrt() * model_output.float()) / alpha.sqrt()
    if prediction_type == "v_prediction":
        return alpha.sqrt() * noisy.float() - (1 - alpha).sqrt() * model_output.float()
    raise ValueError(f"unsupported prediction type {prediction_type}")


def identity_loss(embeddings: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """MagiCapture's L_id = 1 - cos(R(x0-hat face), R(paired source face)) per face; both (N, D)."""
    return 1.0 - functional.cosine_similarity(embeddings.float(), references.float(), dim=-1)
