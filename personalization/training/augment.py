"""Training augmentation as MagiCapture's official dataset does it, with latents that stay cached.

The official dataset (lora_diffusion_/dataset.py) flips each photo horizontally with p 0.5, the
image and its face mask together (lines 356-360, 401-405, 450-454), and jitters its colour with
torchvision's ColorJitter(0.1, 0.1): brightness and contrast factors uniform in [0.9, 1.1],
applied in random order to the image only (lines 298-300; the mask is parsed from the photo
before). Its captions are templates without sides; ours name them in the image's frame, so a
flipped photo's caption has "left" and "right" swapped (prompts.swap_sides).

The official run caches latents (`cached_latents=True`, magicapture_train.py lines 251-268):
the dataset is read once, so each photo trains on a single augmented draw. Here each photo gets
`augmentation_variants` draws, made once per seed from their own generator and each encoded
once, so training still never runs the VAE and a run sees the flip and the jitter it asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from personalization.prompts import swap_sides

FLIP_PROBABILITY = 0.5
BRIGHTNESS = 0.1
CONTRAST = 0.1

# ITU-R 601 luma, as torchvision's rgb_to_grayscale (the mean contrast blends towards).
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Variant:
    flip: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    brightness_first: bool = True

    def pixels(self, image: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) in [-1, 1]: flipped and colour-jittered as ColorJitter does in [0, 1]."""
        if self.brightness == 1 and self.contrast == 1:
            return self.mirror(image)
        unit = (image.float() + 1) / 2
        for step in ("brightness", "contrast") if self.brightness_first else ("contrast", "brightness"):
            if step == "brightness":
                unit = (unit * self.brightness).clamp(0, 1)
            else:
                luma = torch.tensor(_LUMA, device=unit.device).view(3, 1, 1)
                mean = (unit * luma).sum(dim=-3, keepdim=True).mean(dim=(-3, -2, -1), keepdim=True)
                unit = (self.contrast * unit + (1 - self.contrast) * mean).clamp(0, 1)
        return self.mirror(unit * 2 - 1).to(image.dtype)

    def mirror(self, tensor: torch.Tensor) -> torch.Tensor:
        """A mask (or any (..., H, W) tensor) flipped with the photo; colour is never applied."""
        return tensor.flip(-1) if self.flip else tensor

    def caption(self, text: str) -> str:
        return swap_sides(text) if self.flip else text

    def box(
        self, box: tuple[float, float, float, float] | None, width: int
    ) -> tuple[float, float, float, float] | None:
        """A (left, top, right, bottom) pixel box on the flipped photo."""
        if box is None or not self.flip:
            return box
        left, top, right, bottom = box
        return (width - right, top, width - left, bottom)


def draw_variants(count: int, generator: torch.Generator) -> list[Variant]:
    """`count` augmentations; none (0) means the photo as it is."""
    if count == 0:
        return [Variant()]
    variants = []
    for _ in range(count):
        flip, brightness, contrast, order = torch.rand(4, generator=generator).tolist()
        variants.append(
            Variant(
                flip=flip < FLIP_PROBABILITY,
                brightness=1 - BRIGHTNESS + 2 * BRIGHTNESS * brightness,
                contrast=1 - CONTRAST + 2 * CONTRAST * contrast,
                brightness_first=order < 0.5,
            )
        )
    return variants
