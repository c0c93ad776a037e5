"""Where and at what size a photo is edited: the working size, and the crop around the edit region.

The model works at one resolution (512 px for SD 1.5). Scaling a whole 1154 px photo to it and
the edit back up leaves the edited region about 2.25x softer than the untouched pixels around it.
So the edit runs on a crop of the photo: the region's box with context around it, at least the
working size on each side where the photo is that large, so that a region which fits is edited at
the photo's own resolution; only a region larger than the working size is edited downscaled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# Context kept around the edit region's box on each side, as a fraction of the box's longer side:
# the model then sees what surrounds the region (the rest of the head, the shoulders), not a frame
# the region fills edge to edge.
CROP_CONTEXT_FRACTION = 0.25


def _target_side(pipe: Any, resolution: int | None) -> int:
    return resolution or int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)


def _size_multiple(pipe: Any) -> int:
    """What the VAE and the UNet's downsampling divide evenly (64 px on SD 1.5)."""
    return int(pipe.vae_scale_factor) * 2 ** (len(pipe.unet.config.block_out_channels) - 1)


def working_size(pipe: Any, image_size: tuple[int, int], resolution: int | None) -> tuple[int, int]:
    """(height, width) the photo is processed at: its longer side at the model's resolution,
    both sides multiples of what the VAE and the UNet's downsampling divide evenly."""
    width, height = image_size
    multiple = _size_multiple(pipe)
    scale = _target_side(pipe, resolution) / max(width, height)

    def snap(side: int) -> int:
        return max(multiple, round(side * scale / multiple) * multiple)

    return snap(height), snap(width)


@dataclass(frozen=True)
class Crop:
    """The crop of the photo the edit ran on, in photo pixels, and the size it was edited at.

    `box` is (left, top, right, bottom); `working_size` is (height, width). `scale` is working
    pixels per photo pixel: 1.0 at full resolution; below 1 the region was larger than the
    working size and was edited downscaled, so it is that much softer than the photo around it;
    above 1 the photo itself is smaller than the working size.
    """

    box: tuple[int, int, int, int]
    working_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        left, top, right, bottom = self.box
        return right - left, bottom - top

    @property
    def scale(self) -> float:
        return max(self.working_size) / max(self.size)

    @property
    def downscaled(self) -> bool:
        return self.scale < 1.0

    def covers(self, size: tuple[int, int]) -> bool:
        """Whether the crop is the whole photo of `size` (width, height)."""
        return self.box == (0, 0, *size)

    def cut(self, array: np.ndarray) -> np.ndarray:
        """The crop's part of a photo-sized array (a view: writing to it writes the array)."""
        left, top, right, bottom = self.box
        return array[top:bottom, left:right]


def choose_crop(pipe: Any, weight: np.ndarray, resolution: int | None) -> Crop:
    """The crop around every pixel the composite `weight` (photo-sized) touches.

    Each side is the region's extent plus context, at least the working side, rounded up to the
    size multiple (so a crop at the working side is edited without resampling) and at most the
    photo's; the crop is centred on the region and moved inside the photo, so it always holds the
    whole region. An empty region, or a crop as long as the photo, gives the whole photo.
    """
    height, width = weight.shape
    rows, cols = np.nonzero(weight > 0)
    if rows.size == 0:
        box = (0, 0, width, height)
    else:
        top, bottom = int(rows.min()), int(rows.max()) + 1
        left, right = int(cols.min()), int(cols.max()) + 1
        context = CROP_CONTEXT_FRACTION * max(bottom - top, right - left)
        target, multiple = _target_side(pipe, resolution), _size_multiple(pipe)

        def span(low: int, high: int, limit: int) -> tuple[int, int]:
            wanted = max(high - low + 2 * context, target)
            side = min(limit, math.ceil(wanted / multiple) * multiple)
            start = min(max(0, math.floor((low + high - side) / 2)), limit - side)
            return start, start + side

        (left, right), (top, bottom) = span(left, right, width), span(top, bottom, height)
        # A crop as long as the photo would be edited at the whole photo's scale: the whole photo
        # then loses no resolution, keeps all its context and needs no inversion of its own.
        whole = max(right - left, bottom - top) >= max(width, height)
        box = (0, 0, width, height) if whole else (left, top, right, bottom)
    size = (box[2] - box[0], box[3] - box[1])
    return Crop(box, working_size(pipe, size, resolution))
