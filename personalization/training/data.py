"""The photos as training reads them: latents cached once per dataset, batches drawn per step.

The VAE's mean and std of every augmented variant of every photo (augment.py) are computed once
and a fresh latent is drawn from them each step, so no step pays for the VAE. Every draw comes
from the run's one seeded generator, in a fixed order, which is what lets `resume` reproduce an
uninterrupted run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional

from personalization.dataset import PreparedDataset, load_image_tensor, load_mask_tensor
from personalization.models import base_model_revision
from personalization.prior import base_model_key, class_image_set, default_cache_dir
from personalization.training.augment import draw_variants
from personalization.training.config import TrainConfig
from personalization.training.identity import IdentityLoss

logger = logging.getLogger(__name__)

# MagiCapture's composed prompts: the identity and the style in one sentence.
COMPOSED_TEMPLATES = (
    "a photo of {identity} {cls} in the {style} style",
    "a portrait of {identity} {cls} in the {style} style",
    "a close-up photo of {identity} {cls} in the {style} style",
    "a picture of {identity} {cls} in the {style} style",
    "a high quality photo of {identity} {cls} in the {style} style",
    "a good photo of {identity} {cls} in the {style} style",
    "a professional photo of {identity} {cls} in the {style} style",
    "an image of {identity} {cls} in the {style} style",
    "a cropped photo of {identity} {cls} in the {style} style",
    "{identity} {cls} in the {style} style",
)


@dataclass
class Sample:
    kind: str  # instance | prior | source | reference | composed
    latent_mean: torch.Tensor
    latent_std: torch.Tensor
    prompt: str
    recon_mask: torch.Tensor | None = None  # latent resolution
    face_mask: torch.Tensor | None = None
    style_mask: torch.Tensor | None = None
    identity_target: torch.Tensor | None = None  # the paired source photo's face descriptor


@dataclass
class CachedItem:
    mean: torch.Tensor
    std: torch.Tensor
    face_mask: torch.Tensor
    style_mask: torch.Tensor | None
    caption: str
    face_box: tuple[float, float, float, float] | None
    identity: torch.Tensor | None = None  # face descriptor, for source photos when the identity loss is on


def composed_prompt(template: str, tokens: dict[str, str], class_word: str) -> str:
    return template.format(identity=tokens["identity"], style=tokens["style"], cls=class_word)


def encode_pixels(vae: Any, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        distribution = vae.encode(pixels).latent_dist
    return distribution.mean.float(), distribution.std.float()


def _to_latent(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return functional.interpolate(mask[None].float(), size=size, mode="area")[0].clamp_min(0.01)


def cache_dataset(
    dataset: PreparedDataset,
    vae: Any,
    device: torch.device,
    dtype: torch.dtype,
    *,
    identity: IdentityLoss | None = None,
    variants: int,
    generator: torch.Generator,
) -> list[list[CachedItem]]:
    """Per photo, its augmented variants (`variants` of them, drawn from `generator`; 0: the photo
    as it is), each with its latent distribution, masks at latent size, caption and face box. Each
    variant is encoded here, once. With `identity`, the photo's face descriptor (of the photo as it
    is, as the official code embeds the instance photo) goes with every variant."""
    cached = []
    for item in dataset.items:
        photo = load_image_tensor(item.image)[None].to(device)
        face_mask = load_mask_tensor(item.face_mask).to(device)
        style_mask = load_mask_tensor(item.style_mask).to(device) if item.style_mask is not None else None
        target = identity.target(photo.to(dtype)) if identity is not None else None
        versions = []
        for variant in draw_variants(variants, generator):
            pixels = variant.pixels(photo).to(dtype)
            mean, std = encode_pixels(vae, pixels)
            size = (mean.shape[-2], mean.shape[-1])
            versions.append(
                CachedItem(
                    mean=mean,
                    std=std,
                    face_mask=_to_latent(variant.mirror(face_mask), size),
                    style_mask=(
                        _to_latent(variant.mirror(style_mask), size) if style_mask is not None else None
                    ),
                    caption=variant.caption(item.caption()),
                    face_box=variant.box(item.face_box, photo.shape[-1]),
                    identity=target,
                )
            )
        cached.append(versions)
    return cached


def load_class_set(
    pipe: Any, config: TrainConfig, class_word: str, resolution: int, device: torch.device, dtype: torch.dtype
) -> tuple[list[tuple[CachedItem, str]], int]:
    """LIPE's class images (cached on disk per base model), encoded; returns them and how many were new.

    Called on the base model, before any token or LoRA is added.
    """
    cache_root = config.cache_dir or default_cache_dir()
    key = base_model_key(config.base_model, base_model_revision(config.base_model))
    images, generated = class_image_set(
        pipe,
        model_key=key,
        class_word=class_word,
        count=config.num_class_images,
        resolution=resolution,
        steps=config.class_image_steps,
        seed=config.seed,
        cache_root=cache_root,
    )
    logger.info(
        "class set: %d images (%d generated, %d cached)", len(images), generated, len(images) - generated
    )
    class_images = []
    for image in images:
        pixels = load_image_tensor(image.path)[None].to(device, dtype)
        mean, std = encode_pixels(pipe.vae, pixels)
        full = torch.ones(1, *mean.shape[-2:], device=device)
        cached = CachedItem(
            mean=mean, std=std, face_mask=full, style_mask=None, caption=image.prompt, face_box=None
        )
        class_images.append((cached, image.prompt))
    return class_images, generated


@dataclass
class Batches:
    """Draws each step's samples: the phase's kinds in rotation, photos at random from the caches."""

    batch_size: int
    source: list[list[CachedItem]]  # per photo, its augmented variants
    style: list[list[CachedItem]]
    class_images: list[tuple[CachedItem, str]]
    tokens: dict[str, str]
    class_word: str
    generator: torch.Generator

    def _pick(self, count: int) -> int:
        return int(torch.randint(count, (1,), generator=self.generator))

    def _choose(self, photos: list[list[CachedItem]]) -> CachedItem:
        """A photo at random, then one of its variants."""
        variants = photos[self._pick(len(photos))]
        return variants[self._pick(len(variants))]

    def draw(self, step: int, phase_name: str, kinds: tuple[str, ...]) -> list[Sample]:
        samples = []
        for slot in range(self.batch_size):
            kind = kinds[(step * self.batch_size + slot) % len(kinds)]
            if kind in ("instance", "source"):
                item = self._choose(self.source)
                samples.append(
                    Sample(
                        kind,
                        item.mean,
                        item.std,
                        item.caption,
                        recon_mask=item.face_mask if kind == "source" else None,
                        face_mask=item.face_mask,
                        identity_target=item.identity if kind == "source" else None,
                    )
                )
            else:
                item = self._choose(self.style)
                prompt = item.caption
                paired = None
                if kind == "composed":
                    template = COMPOSED_TEMPLATES[self._pick(len(COMPOSED_TEMPLATES))]
                    prompt = composed_prompt(template, self.tokens, self.class_word)
                    # As the official dataset pairs each composed sample with a source photo,
                    # whose face the identity loss compares against.
                    paired = self.source[self._pick(len(self.source))][0].identity
                samples.append(
                    Sample(
                        kind,
                        item.mean,
                        item.std,
                        prompt,
                        recon_mask=item.style_mask,
                        face_mask=item.face_mask if item.face_box is not None else None,
                        style_mask=item.style_mask,
                        identity_target=paired,
                    )
                )
        if phase_name == "identity" and self.class_images:
            for _ in range(self.batch_size):
                cached, prompt = self.class_images[self._pick(len(self.class_images))]
                samples.append(Sample("prior", cached.mean, cached.std, prompt))
        return samples

    def validation(self, method: str) -> list[Sample]:
        """One sample per photo (and a composed one per style photo), each with its reconstruction mask.

        Each photo's first variant: the same fixed set before and after training."""
        samples: list[Sample] = []
        for item in (variants[0] for variants in self.source):
            kind = "instance" if method == "identity" else "source"
            samples.append(Sample(kind, item.mean, item.std, item.caption, recon_mask=item.face_mask))
        for item in (variants[0] for variants in self.style):
            samples.append(Sample("reference", item.mean, item.std, item.caption, recon_mask=item.style_mask))
            composed = composed_prompt(COMPOSED_TEMPLATES[0], self.tokens, self.class_word)
            samples.append(Sample("composed", item.mean, item.std, composed, recon_mask=item.style_mask))
        return samples
