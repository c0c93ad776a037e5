"""The edit region: attention maps to masks, the composite weight, the pixel-space composite."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch.nn import functional as nnf

from personalization.edit.settings import EditError, UserMaskMode


def attention_mask(
    maps: dict[str, torch.Tensor], latent_size: tuple[int, int], threshold: float
) -> np.ndarray:
    """Identifier-token maps (per layer, (h, w)) to a boolean latent-size mask.

    Layers at the latent's full resolution are left out (their maps are the noisiest);
    the others are upsampled, averaged, min-max scaled and thresholded, so the mask
    holds at least the strongest response whenever the maps are not flat.
    """
    height, width = latent_size
    chosen = [m for m in maps.values() if m.shape[-2] < height] or list(maps.values())
    if not chosen:
        raise EditError("no cross-attention maps were captured")
    stacked = torch.stack(
        [
            nnf.interpolate(
                m[None, None].float(), size=(height, width), mode="bilinear", align_corners=False
            )[0, 0]
            for m in chosen
        ]
    )
    mean = stacked.mean(dim=0)
    low, high = float(mean.min()), float(mean.max())
    if high - low <= 1e-12:
        return np.zeros((height, width), dtype=bool)
    scaled = ((mean - low) / (high - low)).cpu().numpy()
    return np.asarray(scaled >= threshold)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to (width, height)."""
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
    return np.asarray(image) > 127


def composite_weight(
    automatic: np.ndarray | None,
    user: np.ndarray | None,
    mode: UserMaskMode,
    *,
    dilate_px: float,
    feather_px: float,
) -> np.ndarray:
    """The float composite weight in [0, 1] at the photo's size (0: the photo's own pixel).

    The automatic mask is dilated by `dilate_px` and feathered outward over `feather_px`
    by distance, so it is exactly 0 beyond dilate+feather. A user mask is feathered
    inward, so nothing outside it is ever touched: "replace" uses it alone, "constrain"
    keeps the automatic weight only inside it.
    """
    weight: np.ndarray | None = None
    if automatic is not None and not (user is not None and mode == "replace"):
        distance = ndimage.distance_transform_edt(~automatic)
        if feather_px > 0:
            weight = np.clip((dilate_px + feather_px - distance) / feather_px, 0.0, 1.0)
        else:
            weight = (distance <= dilate_px).astype(np.float64)
    if user is not None:
        inside = ndimage.distance_transform_edt(user)
        user_weight = np.clip(inside / feather_px, 0.0, 1.0) if feather_px > 0 else user.astype(np.float64)
        weight = user_weight if weight is None else np.minimum(weight, user_weight)
    if weight is None:
        raise EditError("no mask: neither an automatic nor a user mask was given")
    return np.asarray(weight, dtype=np.float64)


def composite(original: np.ndarray, edited: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Pixel-space composite; where the weight is 0 the photo's pixel is copied, bit for bit."""
    w = weight[..., None]
    mixed = np.rint(w * edited.astype(np.float64) + (1 - w) * original.astype(np.float64))
    return np.where(w > 0, np.clip(mixed, 0, 255).astype(np.uint8), original)


def weight_image(weight: np.ndarray) -> Image.Image:
    # ceil keeps every touched pixel non-zero in the 8-bit copy, so "0" means "the photo's pixel".
    return Image.fromarray(np.ceil(weight * 255).astype(np.uint8), mode="L")


def mask_image(mask: np.ndarray, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(resize_mask(mask, size).astype(np.uint8) * 255, mode="L")


def latent_mask(weight: np.ndarray, latent_size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Latent cells that any touched pixel falls in (max pooling of the composite weight)."""
    touched = torch.from_numpy((weight > 0).astype(np.float32))[None, None]
    height, width = latent_size
    pooled = nnf.adaptive_max_pool2d(touched, (height, width))
    return pooled.to(device)


def load_user_mask(path: str, size: tuple[int, int]) -> np.ndarray:
    """A painted mask file (white = editable) as a boolean array; it must match the photo's size."""
    mask = Image.open(path)
    if mask.size != size:
        raise EditError(f"the mask {path} is {mask.size[0]}x{mask.size[1]}, the photo {size[0]}x{size[1]}")
    gray = np.asarray(mask.convert("L"))
    return np.asarray(gray > 127)
