"""MagiCapture's identity loss as training applies it: aligned x0-hat crop, paired target, gates, gradient."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from PIL import Image
from torch.nn import functional

from personalization.dataset import PreparedDataset, image_tensor, load_image_tensor
from personalization.training import TrainConfig, Trainer
from personalization.training.data import Sample
from personalization.training.identity import IdentityLoss
from personalization.training.objective import Objective
from tests.personalization.conftest import FACES

KINDS = ("source", "reference", "composed")


@dataclass
class PhotoDecoder:
    """Stands in for the VAE's decoder: a real face photo, shifted a little by the latent it decodes.

    The tiny model's random VAE never draws a face, so x0-hat would always be skipped; this keeps a
    face in x0-hat while x0-hat still depends on the UNet's prediction, hence on the LoRA weights.
    """

    photo: torch.Tensor  # (1, 3, H, W) in [-1, 1]
    config: Any  # the real VAE's config: its scaling factor

    def decode(self, latents: torch.Tensor) -> SimpleNamespace:
        shift = functional.interpolate(latents.float().mean(dim=1, keepdim=True), size=self.photo.shape[-2:])
        return SimpleNamespace(sample=self.photo + 0.05 * torch.tanh(shift))


@pytest.fixture(scope="module")
def trainer(
    tiny_sd: Path,
    prepared_source: PreparedDataset,
    prepared_style: PreparedDataset,
    tmp_path_factory: pytest.TempPathFactory,
) -> Trainer:
    """A two-step multiconcept run with everything at its defaults: the identity loss is on."""
    config = TrainConfig(
        method="multiconcept",
        base_model=str(tiny_sd),
        images=prepared_source.root,
        style_images=prepared_style.root,
        out=tmp_path_factory.mktemp("identity-loss") / "out",
        steps=2,
        phase1_steps=1,
        batch_size=3,
        checkpoint_every=0,
        validation_repeats=0,
    )
    trainer = Trainer(config)
    result = trainer.run()
    assert result.status == "completed" and result.notices == []
    return trainer


def _draw(trainer: Trainer) -> list[Sample]:
    samples = trainer.batches.draw(0, "joint", KINDS)
    assert [sample.kind for sample in samples] == list(KINDS)
    return samples


def _with(trainer: Trainer, **changes: Any) -> Objective:
    objective = trainer.objective
    config = replace(objective.config, **changes.pop("config", {}))
    return replace(objective, config=config, **changes)


def test_every_source_photo_has_its_target_and_composed_samples_are_paired(trainer: Trainer) -> None:
    targets = [photo[0].identity for photo in trainer.source_cache]
    assert all(target is not None and target.shape == (128,) for target in targets)
    # Every augmented variant of a photo carries the descriptor of the photo as it is.
    assert all(item.identity is photo[0].identity for photo in trainer.source_cache for item in photo)
    source, reference, composed = _draw(trainer)
    assert reference.identity_target is None
    for sample in (source, composed):
        assert any(sample.identity_target is target for target in targets)


def test_the_gradient_reaches_the_lora_weights_through_the_aligned_crop(
    trainer: Trainer, prepared_source: PreparedDataset
) -> None:
    photo = load_image_tensor(prepared_source.items[0].image)[None]
    objective = _with(
        trainer, vae=PhotoDecoder(photo, trainer.vae.config), config={"identity_max_timestep": 1.0}
    )
    samples = _draw(trainer)
    trainer.unet.zero_grad()
    prediction, _, noisy, timesteps, _ = objective.predict(samples, torch.Generator().manual_seed(0))
    loss = objective.identity_term(samples, noisy, prediction, timesteps)
    assert loss is not None and 0 < float(loss.detach()) < 1
    loss.backward()
    lora = {name: value.grad for name, value in trainer.unet.named_parameters() if "lora_B" in name}
    assert lora and any(grad is not None and bool(grad.abs().sum() > 0) for grad in lora.values())


def test_no_face_in_x0_hat_or_a_late_timestep_adds_no_loss(
    trainer: Trainer, prepared_source: PreparedDataset
) -> None:
    samples = _draw(trainer)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        prediction, _, noisy, timesteps, _ = trainer.objective.predict(samples, generator)
        # The tiny model's own decoder draws no face: skipped, no error.
        everywhere = _with(trainer, config={"identity_max_timestep": 1.0})
        assert everywhere.identity_term(samples, noisy, prediction, timesteps) is None
        # With a face in x0-hat but every sample drawn at t >= 0.8T: nothing either.
        photo = load_image_tensor(prepared_source.items[0].image)[None]
        late = _with(trainer, vae=PhotoDecoder(photo, trainer.vae.config))
        late_steps = torch.full_like(timesteps, int(0.8 * trainer.scheduler.config.num_train_timesteps))
        assert late.identity_term(samples, noisy, prediction, late_steps) is None
        assert late.identity_term(samples, noisy, prediction, late_steps - 1) is not None


def test_the_loss_measures_the_paired_person(prepared_source: PreparedDataset) -> None:
    """Closer to another photo of the same person than to a photo of someone else; no face, no loss."""
    identity = IdentityLoss.load(torch.device("cpu"))
    obama, obama2 = (load_image_tensor(item.image)[None] for item in prepared_source.items[:2])
    biden = image_tensor(Image.open(FACES / "biden.jpg").reduce(4))[None]
    same_person, other_person = identity.target(obama2), identity.target(biden)
    assert same_person is not None and other_person is not None
    same, other = identity(obama, [same_person]), identity(obama, [other_person])
    assert same is not None and other is not None and float(same) < float(other)
    blank = torch.zeros(1, 3, 64, 64)
    assert identity.target(blank) is None
    assert identity(blank, [same_person]) is None
