"""The prepared-photo folder that `prepare` writes and the trainers read.

Layout:

    manifest.json        kind (identity/style), resolution, token, class word, one entry per photo,
                         the rejected photos with their reasons, the dataset hash
    quality.json         the per-photo quality report
    images/NNNN.png      the square crop at the training resolution
    masks/NNNN_face.png  the soft face mask (floor 0.01); style photos also have NNNN_style.png,
                         its complement
    captions/NNNN.txt    one caption per photo, a plain file the user may edit before training

The dataset hash covers what training consumes (pixels, masks, captions, resolution, tokens),
so an edited caption changes it and the trained model's manifest says which data made it.
`hash_items` computes it from the files' digests alone, so a service that keeps the files
elsewhere (encrypted, in storage) can recompute it after a caption edit without the files.
torch is imported only by the functions that make tensors: reading and hashing a prepared
folder needs none.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

MANIFEST_NAME = "manifest.json"
QUALITY_NAME = "quality.json"
MASK_FLOOR = 0.01  # MagiCapture's soft-mask floor: no pixel is ever fully unsupervised
DatasetKind = Literal["identity", "style"]


class DatasetError(ValueError):
    """A prepared folder that training cannot use, with the reason."""


@dataclass(frozen=True)
class PreparedItem:
    name: str
    source: str
    image: Path
    face_mask: Path
    style_mask: Path | None
    caption_file: Path
    face_box: tuple[float, float, float, float] | None  # in crop pixels, None when no face (style photo)
    landmarks: list[tuple[float, float]] | None

    def caption(self) -> str:
        return self.caption_file.read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class PreparedDataset:
    root: Path
    kind: DatasetKind
    resolution: int
    token: str
    class_word: str
    items: list[PreparedItem]

    @classmethod
    def load(cls, root: str | Path, *, expect: DatasetKind | None = None) -> PreparedDataset:
        folder = Path(root)
        path = folder / MANIFEST_NAME
        if not path.is_file():
            raise DatasetError(f"{folder} is not a prepared folder (no {MANIFEST_NAME}); run `prepare` first")
        data: dict[str, Any] = json.loads(path.read_text())
        kind = data.get("kind")
        if kind not in ("identity", "style"):
            raise DatasetError(f"{path}: unknown kind {kind!r}")
        if expect is not None and kind != expect:
            raise DatasetError(f"{folder} holds {kind} photos, {expect} photos are needed here")
        items = []
        for entry in data.get("images", []):
            style_mask = entry.get("style_mask")
            box = entry.get("face_box")
            landmarks = entry.get("landmarks")
            items.append(
                PreparedItem(
                    name=entry["name"],
                    source=entry["source"],
                    image=folder / entry["image"],
                    face_mask=folder / entry["face_mask"],
                    style_mask=folder / style_mask if style_mask else None,
                    caption_file=folder / entry["caption"],
                    face_box=tuple(box) if box else None,
                    landmarks=[tuple(point) for point in landmarks] if landmarks else None,
                )
            )
        if not items:
            raise DatasetError(f"{folder} has no usable photos (see the rejected list in {MANIFEST_NAME})")
        dataset = cls(
            root=folder,
            kind=kind,
            resolution=int(data["resolution"]),
            token=str(data["token"]),
            class_word=str(data.get("class_word", "")),
            items=items,
        )
        dataset.validate()
        return dataset

    def validate(self) -> None:
        """Fails on what would silently spoil training: missing files, a caption without its token."""
        for item in self.items:
            for file in (item.image, item.face_mask, item.caption_file, item.style_mask):
                if file is not None and not file.is_file():
                    raise DatasetError(f"{item.name}: {file} is missing")
            if self.token not in item.caption():
                raise DatasetError(
                    f"caption {item.caption_file} does not contain the token {self.token}: "
                    "training could not tie the photo to the identifier"
                )

    def hash(self) -> str:
        return dataset_hash(self)


@dataclass(frozen=True)
class HashedItem:
    """What the dataset hash covers of one photo: its name, the SHA-256 (hex) of each file, its caption."""

    name: str
    image_sha256: str
    face_mask_sha256: str
    style_mask_sha256: str | None
    caption: str


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hash_items(
    kind: DatasetKind, resolution: int, token: str, class_word: str, items: Iterable[HashedItem]
) -> str:
    """The dataset hash from the files' digests and the captions (what dataset_hash reads from disk)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([kind, resolution, token, class_word]).encode())
    for item in sorted(items, key=lambda entry: entry.name):
        digest.update(item.name.encode())
        for file_digest in (item.image_sha256, item.face_mask_sha256, item.style_mask_sha256):
            digest.update(bytes.fromhex(file_digest) if file_digest is not None else b"-")
        digest.update(item.caption.encode("utf-8"))
    return digest.hexdigest()


def dataset_hash(dataset: PreparedDataset) -> str:
    return hash_items(
        dataset.kind,
        dataset.resolution,
        dataset.token,
        dataset.class_word,
        (
            HashedItem(
                name=item.name,
                image_sha256=file_sha256(item.image),
                face_mask_sha256=file_sha256(item.face_mask),
                style_mask_sha256=file_sha256(item.style_mask) if item.style_mask is not None else None,
                caption=item.caption(),
            )
            for item in dataset.items
        ),
    )


def image_tensor(image: Image.Image) -> torch.Tensor:
    """(3, H, W) float in [-1, 1], the VAE's input range."""
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_image_tensor(path: Path) -> torch.Tensor:
    return image_tensor(Image.open(path))


def load_mask_tensor(path: Path) -> torch.Tensor:
    """(1, H, W) float in [MASK_FLOOR, 1]."""
    import torch

    array = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.maximum(array, MASK_FLOOR))[None]


def save_mask(mask: np.ndarray, path: Path) -> None:
    Image.fromarray(np.clip(np.rint(mask * 255.0), 0, 255).astype(np.uint8), mode="L").save(path)
