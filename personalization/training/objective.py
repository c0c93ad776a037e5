"""The losses of a training step: one denoising prediction per sample, then each method's terms.

identity: MSE on the photo (+ the prior MSE on class images). multiconcept: masked MSE per kind
(source, reference, composed), the reference and composed terms weighted by the schedule's
lambda_style; in the joint phase, every term at t < 0.8T, attention refocusing on the recorded
cross-attention maps and the identity loss on source and composed samples (training/identity.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from personalization.attention import AttentionController
from personalization.losses import attention_refocus_loss, masked_mse, predicted_original
from personalization.training.config import TrainConfig
from personalization.training.data import Sample
from personalization.training.identity import IdentityLoss
from personalization.training.schedule import STYLED_KINDS, timestep_fraction
from personalization.training.text import PromptEncoder


@dataclass
class Objective:
    """What a step's losses read: the frozen modules, the prompt encoder and the loss settings."""

    config: TrainConfig
    scheduler: Any
    vae: Any
    unet: Any  # the UNet's forward (compiled with --compile)
    text: PromptEncoder
    token_ids: dict[str, int]
    device: torch.device
    weight_dtype: torch.dtype
    autocast: bool
    recorder: AttentionController | None
    identity: IdentityLoss | None

    def predict(
        self, samples: list[Sample], generator: torch.Generator, max_timestep: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """One denoising prediction per sample at t < max_timestep * T; every random draw comes
        from `generator`."""
        mean = torch.cat([sample.latent_mean for sample in samples])
        std = torch.cat([sample.latent_std for sample in samples])
        draw = torch.randn(mean.shape, generator=generator).to(self.device)
        latents = (mean + std * draw) * self.vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator).to(self.device)
        high = int(self.scheduler.config.num_train_timesteps * max_timestep)
        timesteps = torch.randint(0, high, (len(samples),), generator=generator).to(self.device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        prediction_type = self.scheduler.config.prediction_type
        target = (
            noise if prediction_type == "epsilon" else self.scheduler.get_velocity(latents, noise, timesteps)
        )
        prompts = [sample.prompt for sample in samples]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            embeds, added = self.text.conditioning(prompts)
            if self.recorder is not None:
                self.recorder.recorded.clear()
            prediction = self.unet(
                noisy.to(self.weight_dtype), timesteps, embeds, added_cond_kwargs=added
            ).sample
        return prediction.float(), target.float(), noisy, timesteps, prompts

    def validation_losses(self, samples: list[Sample]) -> dict[str, float]:
        """Reconstruction losses on fixed draws over `samples`: comparable before and after training.

        Training losses are single random draws; this fixed set is what shows a run learned.
        """
        generator = torch.Generator("cpu").manual_seed(self.config.seed + 3)
        totals: dict[str, list[float]] = {}
        with torch.no_grad():
            for _ in range(self.config.validation_repeats):
                for sample in samples:
                    prediction, target, *_ = self.predict([sample], generator)
                    mask = (
                        sample.recon_mask if sample.recon_mask is not None else torch.ones_like(target[:, :1])
                    )
                    loss = masked_mse(prediction, target, mask[None] if mask.ndim == 3 else mask)
                    totals.setdefault(sample.kind, []).append(float(loss[0]))
        return {kind: sum(values) / len(values) for kind, values in totals.items()}

    def losses(
        self, samples: list[Sample], phase: str, generator: torch.Generator, *, style_weight: float = 1.0
    ) -> tuple[torch.Tensor, dict[str, float]]:
        config = self.config
        prediction, target, noisy, timesteps, prompts = self.predict(
            samples, generator, timestep_fraction(config, phase)
        )
        parts: dict[str, torch.Tensor] = {}
        kinds = [sample.kind for sample in samples]
        if phase == "identity":
            per_sample = (prediction - target.float()).pow(2).mean(dim=(1, 2, 3))
            instance = torch.tensor([kind == "instance" for kind in kinds], device=self.device)
            parts["instance"] = per_sample[instance].mean()
            if not bool(instance.all()):
                parts["prior"] = per_sample[~instance].mean() * config.prior_loss_weight
        else:
            masks = torch.stack([sample.recon_mask for sample in samples])  # type: ignore[misc]
            per_sample = masked_mse(prediction, target, masks)
            for kind in ("source", "reference", "composed"):
                chosen = torch.tensor([k == kind for k in kinds], device=self.device)
                if bool(chosen.any()):
                    weight = style_weight if kind in STYLED_KINDS else 1.0
                    parts[kind] = per_sample[chosen].mean() * weight
            if phase == "joint":
                parts["attention"] = config.attention_loss_weight * self.refocus(samples, prompts)
                if self.identity is not None:
                    identity = self.identity_term(samples, noisy, prediction, timesteps)
                    if identity is not None:
                        parts["identity"] = config.identity_loss_weight * identity
        total = torch.stack(list(parts.values())).sum()
        reported = {name: float(value.detach()) for name, value in parts.items()}
        reported["total"] = float(total.detach())
        return total, reported

    def refocus(self, samples: list[Sample], prompts: list[str]) -> torch.Tensor:
        assert self.recorder is not None
        ids = self.text.token_ids(self.text.tokenizers[0], prompts)
        positions = torch.zeros(len(samples), 2, dtype=torch.long, device=self.device)
        valid = torch.zeros(len(samples), 2, dtype=torch.bool, device=self.device)
        reference = samples[0].latent_mean
        masks = torch.zeros(len(samples), 2, *reference.shape[-2:], device=self.device)
        for index, sample in enumerate(samples):
            for slot, (role, mask) in enumerate(
                (("identity", sample.face_mask), ("style", sample.style_mask))
            ):
                found = (ids[index] == self.token_ids[role]).nonzero()
                if mask is None or len(found) == 0:
                    continue
                positions[index, slot] = found[0, 0]
                valid[index, slot] = True
                masks[index, slot] = mask[0]
        maps = self.recorder.token_maps(positions)
        return attention_refocus_loss(maps, masks, valid)

    def identity_term(
        self, samples: list[Sample], noisy: torch.Tensor, prediction: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor | None:
        """MagiCapture's identity loss on the source and composed samples drawn at t < 0.8T.

        x0-hat is decoded only for those samples; samples whose x0-hat shows no face add nothing.
        """
        assert self.identity is not None
        limit = self.config.identity_max_timestep * self.scheduler.config.num_train_timesteps
        chosen = [
            index
            for index, sample in enumerate(samples)
            if sample.kind in ("source", "composed")
            and sample.identity_target is not None
            and float(timesteps[index]) < limit
        ]
        if not chosen:
            return None
        index = torch.tensor(chosen, device=self.device)
        x0 = predicted_original(
            noisy[index],
            prediction[index],
            self.scheduler.alphas_cumprod,
            timesteps[index],
            self.scheduler.config.prediction_type,
        )
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            images = self.vae.decode(
                (x0 / self.vae.config.scaling_factor).to(self.weight_dtype)
            ).sample.float()
        targets = [target for i in chosen if (target := samples[i].identity_target) is not None]
        return self.identity(images, targets)
