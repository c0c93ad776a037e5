"""An invisible watermark carrying a 32-bit release number, recoverable after re-encoding and resizing.

The scheme is invisible-watermark's dwtDctSvd (quantisation index modulation of the largest
singular value of the DCT of 4x4 blocks of the Haar-wavelet approximation of the U chroma
plane), written here in numpy and scipy because the library itself could not be used as is
(measured, docs/provenance.md): it refuses images under 256x256 pixels, and importing it imports
torch (for its RivaGAN method), which the web process that verifies uploads must not load; it
also pulls opencv-python with its GUI libraries. TrustMark, the watermark C2PA names for soft
binding, downloads its model weights at run time, which this offline product cannot do.

Payload: 32 bits of the release's watermark number, then their CRC-32, repeated over every
block of the image and read back by averaging each bit's votes. The CRC makes a false match on
an unmarked image a 1-in-2^32 event per size tried, so a verifier may try several sizes.

Limits: each bit needs many blocks, so an image must be at least MIN_SIDE pixels on its shorter
side (`stamp` upscales smaller outputs before marking them). A resized copy reads back once
resized to the size it was released at; the verifier knows the sizes it released (`decode`'s
`sizes`). A crop, a rotation or a strong filter destroys the mark; the registry hash and the
manifest are the other two ways to find a release.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy.fft import dctn, idctn

PAYLOAD_BITS = 32
CHECK_BITS = 32
BITS = PAYLOAD_BITS + CHECK_BITS
MAX_NUMBER = 2**PAYLOAD_BITS - 1
# invisible-watermark's measured defaults: 4x4 blocks of the wavelet approximation, step 36.
BLOCK = 4
STEP = 36.0
# Measured on the tiny model's saturated 64 px outputs upscaled: at 256 px (16 votes per bit) the
# mark failed JPEG q90 in 9 of 10 tries, at 384 and 512 px in none; 512 leaves a margin.
MIN_SIDE = 512

FloatArray = NDArray[np.float64]


class WatermarkError(ValueError):
    """An image too small to carry the mark, or a number that does not fit in it."""


def embed(image: Image.Image, number: int) -> Image.Image:
    """`image` (RGB) with `number` marked into it; the change is a fraction of a grey level on average."""
    if not 0 <= number <= MAX_NUMBER:
        raise WatermarkError(f"the watermark number must be from 0 to {MAX_NUMBER}.")
    if min(image.size) < MIN_SIDE:
        raise WatermarkError(f"an image must be at least {MIN_SIDE} pixels on its shorter side to be marked.")
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    y, u, v = _to_yuv(rgb)
    height, width = (u.shape[0] // (2 * BLOCK)) * 2 * BLOCK, (u.shape[1] // (2 * BLOCK)) * 2 * BLOCK
    approximation = _haar_approximation(u[:height, :width])
    blocks = _blocks(approximation)
    bits = np.resize(_payload(number), len(blocks)).astype(np.float64)
    coefficients = dctn(blocks, axes=(1, 2), norm="ortho")
    left, singular, right = np.linalg.svd(coefficients)
    singular[:, 0] = (np.floor(singular[:, 0] / STEP) + 0.25 + 0.5 * bits) * STEP
    marked = idctn(left @ (singular[:, :, None] * right), axes=(1, 2), norm="ortho")
    change = _unblocks(marked, approximation.shape) - approximation
    # Changing only the approximation band, the inverse Haar transform adds half the change to each
    # of the four pixels under it.
    u[:height, :width] += np.repeat(np.repeat(change / 2, 2, axis=0), 2, axis=1)
    return Image.fromarray(_to_rgb(y, u, v))


def decode(image: Image.Image, sizes: Iterable[tuple[int, int]] = ()) -> int | None:
    """The number marked in `image`, or None; tried as it is, then resized to each of `sizes`.

    `sizes` are the (width, height) the release was issued at: a copy resized since reads back
    once brought back to one of them.
    """
    rgb_image = image.convert("RGB")
    candidates = [rgb_image.size, *(size for size in sizes if size != rgb_image.size)]
    for size in candidates:
        if min(size) < MIN_SIDE // 2:
            continue
        resized = rgb_image if size == rgb_image.size else rgb_image.resize(size, Image.Resampling.BICUBIC)
        number = _read(np.asarray(resized, dtype=np.float64))
        if number is not None:
            return number
    return None


def _read(rgb: FloatArray) -> int | None:
    _, u, _ = _to_yuv(rgb)
    height, width = (u.shape[0] // (2 * BLOCK)) * 2 * BLOCK, (u.shape[1] // (2 * BLOCK)) * 2 * BLOCK
    blocks = _blocks(_haar_approximation(u[:height, :width]))
    if len(blocks) < BITS:
        return None
    singular = np.linalg.svd(dctn(blocks, axes=(1, 2), norm="ortho"), compute_uv=False)[:, 0]
    votes = (np.mod(singular, STEP) > STEP / 2).astype(np.float64)
    count = (len(votes) // BITS) * BITS
    # Whole rounds of the payload only, so every bit has the same number of votes.
    bits = votes[:count].reshape(-1, BITS).mean(axis=0) > 0.5
    number = int("".join("1" if bit else "0" for bit in bits[:PAYLOAD_BITS]), 2)
    check = int("".join("1" if bit else "0" for bit in bits[PAYLOAD_BITS:]), 2)
    return number if zlib.crc32(number.to_bytes(4, "big")) == check else None


def _payload(number: int) -> NDArray[np.uint8]:
    word = (number << CHECK_BITS) | zlib.crc32(number.to_bytes(4, "big"))
    return np.array([(word >> (BITS - 1 - index)) & 1 for index in range(BITS)], dtype=np.uint8)


def _to_yuv(rgb: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """YUV as OpenCV's BGR2YUV computes it (the colour space the scheme was measured in)."""
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * red + 0.587 * green + 0.114 * blue
    return y, 0.492 * (blue - y) + 128.0, 0.877 * (red - y) + 128.0


def _to_rgb(y: FloatArray, u: FloatArray, v: FloatArray) -> NDArray[np.uint8]:
    blue = (u - 128.0) / 0.492 + y
    red = (v - 128.0) / 0.877 + y
    green = (y - 0.299 * red - 0.114 * blue) / 0.587
    return np.clip(np.rint(np.stack([red, green, blue], axis=-1)), 0, 255).astype(np.uint8)


def _haar_approximation(plane: FloatArray) -> FloatArray:
    return (plane[0::2, 0::2] + plane[1::2, 0::2] + plane[0::2, 1::2] + plane[1::2, 1::2]) / 2


def _blocks(plane: FloatArray) -> FloatArray:
    rows, cols = plane.shape[0] // BLOCK, plane.shape[1] // BLOCK
    return plane.reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3).reshape(-1, BLOCK, BLOCK)


def _unblocks(blocks: FloatArray, shape: tuple[int, ...]) -> FloatArray:
    rows, cols = shape[0] // BLOCK, shape[1] // BLOCK
    return blocks.reshape(rows, cols, BLOCK, BLOCK).transpose(0, 2, 1, 3).reshape(shape)
