"""Training augmentation (MagiCapture's official flip and colour jitter) with cached latents."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from personalization.dataset import PreparedDataset, load_image_tensor
from personalization.models import load_pipeline
from personalization.prompts import swap_sides
from personalization.training import TrainConfig, Trainer, TrainProgress
from personalization.training.augment import Variant, draw_variants
from personalization.training.data import CachedItem, cache_dataset, encode_pixels


def test_swap_sides_swaps_every_standalone_left_and_right() -> None:
    caption = "<sks> person, head turned to the left, tilted to the Right, looking LEFT, leftover"
    assert swap_sides(caption) == (
        "<sks> person, head turned to the right, tilted to the Left, looking RIGHT, leftover"
    )
    assert swap_sides(swap_sides(caption)) == caption
    assert swap_sides("<sks> person, facing the camera") == "<sks> person, facing the camera"


def test_variants_flip_half_of_the_photos_and_jitter_within_a_tenth() -> None:
    variants = draw_variants(400, torch.Generator().manual_seed(0))
    flipped = sum(variant.flip for variant in variants)
    assert 160 < flipped < 240
    for variant in variants:
        assert 0.9 <= variant.brightness <= 1.1 and 0.9 <= variant.contrast <= 1.1
    assert draw_variants(0, torch.Generator()) == [Variant()]  # off: the photo as it is


@pytest.fixture(scope="module")
def vae(tiny_sd: Path) -> AutoencoderKL:
    return load_pipeline(tiny_sd, device="cpu").vae


def _cache(dataset: PreparedDataset, vae: AutoencoderKL, count: int, seed: int) -> list[list[CachedItem]]:
    generator = torch.Generator().manual_seed(seed)
    cpu = torch.device("cpu")
    return cache_dataset(dataset, vae, cpu, torch.float32, variants=count, generator=generator)


def test_a_flipped_variant_mirrors_masks_box_and_caption_and_jitter_leaves_masks_alone(
    vae: AutoencoderKL, prepared_source: PreparedDataset
) -> None:
    seed, count = 3, 4
    # cache_dataset draws each photo's variants in turn from its generator.
    drawing = torch.Generator().manual_seed(seed)
    expected = [draw_variants(count, drawing) for _ in prepared_source.items]
    assert {variant.flip for variants in expected for variant in variants} == {True, False}
    plain = _cache(prepared_source, vae, 0, seed)
    augmented = _cache(prepared_source, vae, count, seed)
    width = prepared_source.resolution
    swapped = 0
    for item, (original,), versions, variants in zip(
        prepared_source.items, plain, augmented, expected, strict=True
    ):
        photo = load_image_tensor(item.image)[None]
        assert torch.equal(original.mean, encode_pixels(vae, photo)[0])  # the photo as it is
        for variant, version in zip(variants, versions, strict=True):
            assert version.caption == (swap_sides(item.caption()) if variant.flip else item.caption())
            swapped += version.caption != item.caption()
            mirrored = original.face_mask.flip(-1) if variant.flip else original.face_mask
            # Flipped with the photo, never jittered (equal up to the pooling's summation order).
            assert torch.allclose(version.face_mask, mirrored, atol=1e-6)
            assert original.face_box is not None
            left, top, right, bottom = original.face_box
            box = (width - right, top, width - left, bottom) if variant.flip else original.face_box
            assert version.face_box == box
            # The image is flipped likewise, and its colour changed (a tenth at most); that image is
            # what was encoded.
            flipped_only = photo.flip(-1) if variant.flip else photo
            pixels = variant.pixels(photo)
            assert not torch.equal(pixels, flipped_only) and (pixels - flipped_only).abs().max() <= 0.25
            assert torch.equal(version.mean, encode_pixels(vae, pixels)[0])
    assert swapped  # obama2's "head turned slightly to the left" was flipped at least once
    # The masks are not symmetric, so the comparisons above do tell a flip from none.
    assert not torch.equal(plain[0][0].face_mask.flip(-1), plain[0][0].face_mask)


def test_a_second_epoch_encodes_nothing_new(
    tiny_sd: Path, prepared_source: PreparedDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every variant is encoded once at setup; training past the first epoch reads the cache."""
    encoded: list[int] = []
    encode = AutoencoderKL.encode

    def counting(self: AutoencoderKL, pixels: torch.Tensor, *args: object, **kwargs: object) -> object:
        encoded.append(pixels.shape[0])
        return encode(self, pixels, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKL, "encode", counting)
    photos, variants = len(prepared_source.items), 2
    config = TrainConfig(
        method="identity",
        base_model=str(tiny_sd),
        images=prepared_source.root,
        out=tmp_path / "out",
        steps=2 * photos * variants + 1,  # past the second epoch
        augmentation_variants=variants,
        prior_preservation=False,  # the photos' cache is under test
        checkpoint_every=0,
        validation_repeats=0,
    )
    encoded_by_step: list[int] = []

    def progress(event: TrainProgress) -> None:
        encoded_by_step.append(sum(encoded))

    result = Trainer(config, progress).run()
    assert result.status == "completed" and len(encoded_by_step) == config.steps
    assert encoded_by_step[0] == photos * variants  # the cache, made before the first step
    assert encoded_by_step[-1] == photos * variants  # and nothing encoded after it
