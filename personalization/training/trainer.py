"""The Trainer: setup, the phases and their optimizers, the losses of each step, and the loop.

The data (cached latents, batches), the trained parameters (token rows, LoRA), prompt encoding,
checkpoints and the written folder live in their own modules of this package; this one holds
what ties them together in the order a run needs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler
from PIL import Image
from torch import nn

from personalization.attention import AttentionController, cross_attention_layers
from personalization.dataset import DatasetError, PreparedDataset
from personalization.models import load_pipeline, pick_device, pipeline_kind
from personalization.training import checkpoints
from personalization.training.config import (
    ProgressCallback,
    TrainConfig,
    TrainingError,
    TrainProgress,
    TrainResult,
    fingerprint,
)
from personalization.training.data import (
    COMPOSED_TEMPLATES,
    Batches,
    CachedItem,
    cache_dataset,
    composed_prompt,
    load_class_set,
)
from personalization.training.identity import IdentityLoss
from personalization.training.objective import Objective
from personalization.training.outputs import write_outputs
from personalization.training.parameters import TrainableTokenRows, add_lora, add_trainable_tokens
from personalization.training.schedule import (
    clips_gradients,
    parameter_groups,
    pull_embedding_norms,
    rate_factor,
    set_rates,
    style_weight,
)
from personalization.training.text import PromptEncoder

logger = logging.getLogger(__name__)

LOSS_WINDOW = 10  # final losses: mean of each component over the last steps


@dataclass
class _Phase:
    name: str
    kinds: tuple[str, ...]
    optimizer: torch.optim.Optimizer
    groups: dict[str, list[nn.Parameter]] = field(default_factory=dict)


class Trainer:
    """Runs one training job; `pipe` afterwards is the trained pipeline (LoRA active, tokens merged)."""

    def __init__(self, config: TrainConfig, progress: ProgressCallback | None = None) -> None:
        self.config = config
        self.progress = progress
        self.notices: list[str] = []
        config.validate()
        self.device = pick_device(config.device)
        # "auto" is bf16 on CUDA only (CPU bf16 is slow without AMX); an explicit "bf16" also runs on
        # CPU, which is how the GPU's default dtype path is tested on machines without one.
        requested = config.mixed_precision == "bf16"
        self.autocast = requested or (self.device.type == "cuda" and config.mixed_precision == "auto")
        if self.autocast and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            if requested:
                raise TrainingError("this GPU has no bf16: use --mixed-precision no")
            self.autocast = False
            self._notice("this GPU has no bf16: training in fp32")
        self.weight_dtype = torch.bfloat16 if self.autocast else torch.float32
        try:
            self.source = PreparedDataset.load(config.images, expect="identity")
            self.style = (
                PreparedDataset.load(config.style_images, expect="style")
                if config.style_images is not None
                else None
            )
        except DatasetError as error:
            raise TrainingError(str(error)) from error
        if self.style is not None and self.style.resolution != self.source.resolution:
            raise TrainingError(
                f"source photos are prepared at {self.source.resolution} px, "
                f"style photos at {self.style.resolution} px"
            )
        if self.style is not None and self.style.token == self.source.token:
            raise TrainingError(f"identity and style photos use the same token {self.source.token}")
        if config.resolution is not None and self.source.resolution != config.resolution:
            raise TrainingError(
                f"the photos are prepared at {self.source.resolution} px and this run trains at "
                f"{config.resolution} px: prepare them again at {config.resolution} px"
            )
        self.resolution = self.source.resolution
        self.generator = torch.Generator("cpu").manual_seed(config.seed)
        self.history: list[dict[str, float]] = []
        self.elapsed_before = 0.0
        self.validation_before: dict[str, float] = {}
        self.class_generated = 0  # class images this run had to generate (the rest came from the cache)
        self.pipe: Any = None

    def _notice(self, text: str) -> None:
        logger.warning(text)
        self.notices.append(text)

    # ---- setup ---------------------------------------------------------------------------------

    def _setup(self) -> None:
        config = self.config
        self.pipe = load_pipeline(config.base_model, device=self.device, dtype=self.weight_dtype)
        self.kind = pipeline_kind(self.pipe)
        self.unet = self.pipe.unet
        self.vae = self.pipe.vae
        self.text_encoders = [self.pipe.text_encoder] + (
            [self.pipe.text_encoder_2] if self.kind == "sdxl" else []
        )
        self.tokenizers = [self.pipe.tokenizer] + ([self.pipe.tokenizer_2] if self.kind == "sdxl" else [])
        for module in (self.unet, self.vae, *self.text_encoders):
            module.requires_grad_(False)
        self.scheduler = DDPMScheduler.from_config(self.pipe.scheduler.config)
        self.class_images: list[tuple[CachedItem, str]] = []
        if config.uses_prior():
            # The base model, before any token or LoRA is added.
            self.class_images, self.class_generated = load_class_set(
                self.pipe,
                config,
                self.source.class_word or "person",
                self.resolution,
                self.device,
                self.weight_dtype,
            )
        self.tokens = {"identity": self.source.token}
        if self.style is not None:
            self.tokens["style"] = self.style.token
        self.token_rows: list[TrainableTokenRows] = add_trainable_tokens(
            self.tokenizers,
            self.text_encoders,
            self.tokens,
            config=config,
            class_word=self.source.class_word,
            device=self.device,
        )
        self.token_ids = {
            role: self.tokenizers[0].convert_tokens_to_ids(token) for role, token in self.tokens.items()
        }
        self.unet_lora, self.text_lora = add_lora(self.unet, self.text_encoders, config, self.device)
        self.recorder: AttentionController | None = None
        if config.method == "multiconcept":
            latent_side = self.resolution // int(self.pipe.vae_scale_factor)
            self.recorder = AttentionController(
                latent_size=(latent_side, latent_side), record=cross_attention_layers(self.unet)
            )
        self.identity = (
            IdentityLoss.load(self.device)
            if config.method == "multiconcept" and config.identity_loss_weight > 0
            else None
        )
        # The augmentations have their own generator: the same seed draws the same variants.
        augmentations = torch.Generator("cpu").manual_seed(config.seed + 4)

        def cache(dataset: PreparedDataset, identity: IdentityLoss | None = None) -> list[list[CachedItem]]:
            return cache_dataset(
                dataset,
                self.vae,
                self.device,
                self.weight_dtype,
                identity=identity,
                variants=config.augmentation_variants,
                generator=augmentations,
            )

        self.source_cache = cache(self.source, self.identity)
        faceless = (
            sum(photo[0].identity is None for photo in self.source_cache) if self.identity is not None else 0
        )
        if faceless:
            self._notice(
                f"identity loss: no face found in {faceless} of {len(self.source_cache)} source photos; "
                "their samples train without it"
            )
        self.style_cache = cache(self.style) if self.style is not None else []
        captions = [item.caption for photo in self.source_cache + self.style_cache for item in photo]
        self.batches = Batches(
            batch_size=config.batch_size,
            source=self.source_cache,
            style=self.style_cache,
            class_images=self.class_images,
            tokens=self.tokens,
            class_word=self.source.class_word,
            generator=self.generator,
        )
        self.text_frozen = config.method == "identity"
        self.text = PromptEncoder(
            self.kind,
            self.tokenizers,
            self.text_encoders,
            self.device,
            self.resolution,
            frozen=self.text_frozen,
        )
        self.text.warn_long_prompts(captions)
        if self.text_frozen:
            self.text.precompute(captions + [prompt for _, prompt in self.class_images])
        if config.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            if not self.text_frozen:
                for encoder in self.text_encoders:
                    encoder.gradient_checkpointing_enable()
        self.unet.train()
        for encoder in self.text_encoders:
            encoder.train(not self.text_frozen)
        self.objective = Objective(
            config=config,
            scheduler=self.scheduler,
            vae=self.vae,
            unet=torch.compile(self.unet) if config.compile else self.unet,
            text=self.text,
            token_ids=self.token_ids,
            device=self.device,
            weight_dtype=self.weight_dtype,
            autocast=self.autocast,
            recorder=self.recorder,
            identity=self.identity,
        )

    # ---- phases --------------------------------------------------------------------------------

    def _phase_name(self, step: int) -> str:
        if self.config.method == "identity":
            return "identity"
        return "embeddings" if step < self.config.embedding_steps() else "joint"

    def _make_optimizer(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        try:
            return torch.optim.AdamW(groups, fused=True)
        except (RuntimeError, ValueError) as error:
            logger.info("fused AdamW unavailable here (%s): using the default implementation", error)
            return torch.optim.AdamW(groups)

    def _start_phase(self, name: str) -> _Phase:
        rows = [wrapper.rows for wrapper in self.token_rows]
        for parameter in self.unet_lora + self.text_lora + rows:
            parameter.requires_grad_(False)
        specs = parameter_groups(name, self.config, self.unet_lora, self.text_lora, rows)
        groups = {spec["name"]: spec["params"] for spec in specs}
        kinds: tuple[str, ...] = {
            "identity": ("instance",),
            "embeddings": ("source", "reference"),
            "joint": ("source", "reference", "composed"),
        }[name]
        for params in groups.values():
            for parameter in params:
                parameter.requires_grad_(True)
        if self.recorder is not None:
            if name == "joint":
                self.recorder.install(self.unet)
            else:
                self.recorder.remove()
        return _Phase(name=name, kinds=kinds, optimizer=self._make_optimizer(specs), groups=groups)

    def _update(self, step: int, phase: _Phase) -> None:
        """One optimizer update at `step` (0-based) on the gradients already computed (schedule.py)."""
        set_rates(phase.optimizer, rate_factor(self.config, phase.name, step))
        if clips_gradients(phase.name):
            parameters = [p for params in phase.groups.values() for p in params]
            torch.nn.utils.clip_grad_norm_(parameters, self.config.max_grad_norm)
        phase.optimizer.step()
        phase.optimizer.zero_grad(set_to_none=True)
        if phase.name == "embeddings":
            rate = phase.optimizer.param_groups[0]["lr"]
            for wrapper in self.token_rows:
                pull_embedding_norms(wrapper.rows, rate, self.config.embedding_norm_target)

    def validation_losses(self) -> dict[str, float]:
        return self.objective.validation_losses(self.batches.validation(self.config.method))

    # ---- checkpoints ---------------------------------------------------------------------------

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        state = {f"unet.{n}": p for n, p in self.unet.named_parameters() if "lora_" in n}
        for index, encoder in enumerate(self.text_encoders):
            state.update({f"text{index}.{n}": p for n, p in encoder.named_parameters() if "lora_" in n})
        for index, wrapper in enumerate(self.token_rows):
            state[f"rows{index}"] = wrapper.rows
        return state

    def _save_checkpoint(self, step: int, phase: _Phase, elapsed: float) -> Path:
        payload = {
            "phase": phase.name,
            "fingerprint": self.fingerprint,
            "trainable": {
                name: value.detach().cpu().clone() for name, value in self._trainable_state().items()
            },
            "optimizer": phase.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "history": self.history,
            "elapsed": elapsed,
            "validation_before": self.validation_before,
        }
        return checkpoints.save_checkpoint(self.config.out, step, payload, keep=self.config.keep_checkpoints)

    def latest_checkpoint(self) -> Path | None:
        return checkpoints.latest_checkpoint(self.config.out)

    def _restore(self, path: Path) -> tuple[int, dict[str, Any]]:
        payload = checkpoints.load_checkpoint(path, self.fingerprint)
        current = self._trainable_state()
        with torch.no_grad():
            for name, value in payload["trainable"].items():
                current[name].copy_(value.to(current[name].device))
        self.generator.set_state(payload["generator"])
        self.history = list(payload["history"])
        self.elapsed_before = float(payload["elapsed"])
        return int(payload["step"]), payload

    # ---- the run -------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        checkpoints.check_out_dir(self.config.out, resume=self.config.resume)
        started = time.monotonic()
        self._setup()
        hashes = [self.source.hash()] + ([self.style.hash()] if self.style is not None else [])
        self.fingerprint = fingerprint(self.config, hashes)
        total = self.config.total_steps()
        step = 0
        if self.config.resume:
            checkpoint = self.latest_checkpoint()
            assert checkpoint is not None
            step, payload = self._restore(checkpoint)
            # The optimizer of the phase the checkpoint was taken in; a phase boundary right after
            # it then starts a fresh one, exactly as the uninterrupted run did.
            phase = self._start_phase(payload["phase"])
            phase.optimizer.load_state_dict(payload["optimizer"])
            self.validation_before = dict(payload["validation_before"])
            logger.info("resumed from %s at step %d", checkpoint, step)
        else:
            phase = self._start_phase(self._phase_name(0))
            self.validation_before = self.validation_losses()
        session_start, session_steps = time.monotonic(), 0
        last_checkpoint: Path | None = None
        while step < total:
            wanted = self._phase_name(step)
            if wanted != phase.name:
                phase = self._start_phase(wanted)
            samples = self.batches.draw(step, phase.name, phase.kinds)
            loss, reported = self.objective.losses(
                samples, phase.name, self.generator, style_weight=style_weight(self.config, phase.name, step)
            )
            loss.backward()
            self._update(step, phase)
            step += 1
            session_steps += 1
            self.history = [*self.history[-(LOSS_WINDOW - 1) :], reported]
            elapsed = self.elapsed_before + time.monotonic() - started
            if self.config.checkpoint_every and step % self.config.checkpoint_every == 0 and step < total:
                last_checkpoint = self._save_checkpoint(step, phase, elapsed)
            answer = self._report(step, total, phase, reported, elapsed, session_start, session_steps)
            if answer == "stop" and step < total:
                if last_checkpoint is None or not last_checkpoint.name.endswith(f"{step:07d}.pt"):
                    last_checkpoint = self._save_checkpoint(step, phase, elapsed)
                logger.info("stopped at step %d of %d; checkpoint %s", step, total, last_checkpoint)
                self._finish_modules()
                return TrainResult(
                    "stopped", step, self.config.out, self._final_losses(), self.notices, last_checkpoint
                )
        validation = {"before": self.validation_before, "after": self.validation_losses()}
        self._finish_modules()
        manifest = write_outputs(
            self.config,
            kind=self.kind,
            unet=self.unet,
            text_encoders=self.text_encoders,
            tokens=self.tokens,
            first_new=[wrapper.first_new for wrapper in self.token_rows],
            source=self.source,
            style=self.style,
            resolution=self.resolution,
            steps=step,
            wall_time=self.elapsed_before + time.monotonic() - started,
            final_losses=self._final_losses(),
            validation=validation,
            notices=self.notices,
            device=self.device,
        )
        return TrainResult(
            "completed", step, self.config.out, self._final_losses(), self.notices, None, manifest, validation
        )

    def _report(
        self,
        step: int,
        total: int,
        phase: _Phase,
        reported: dict[str, float],
        elapsed: float,
        session_start: float,
        session_steps: int,
    ) -> str | None:
        if self.progress is None:
            return None
        per_step = (time.monotonic() - session_start) / session_steps
        preview = None
        if self.config.preview_every and step % self.config.preview_every == 0:
            preview = self.preview()
        rates = {group["name"]: float(group["lr"]) for group in phase.optimizer.param_groups}
        notices = tuple(self.notices) if session_steps == 1 else ()
        return self.progress(
            TrainProgress(
                step=step,
                total=total,
                phase=phase.name,
                losses=reported,
                learning_rates=rates,
                eta_seconds=per_step * (total - step),
                elapsed_seconds=elapsed,
                preview=preview,
                notices=notices,
            )
        )

    def preview_prompt(self) -> str:
        cls = self.source.class_word or "person"
        if "style" in self.tokens:
            return composed_prompt(COMPOSED_TEMPLATES[0], self.tokens, cls)
        return f"a photo of {self.tokens['identity']} {cls}"

    def preview(self) -> Image.Image:
        """An image from the current weights, with its own generator so training draws are unaffected."""
        installed = self.recorder is not None and self.recorder.installed
        if self.recorder is not None:
            self.recorder.remove()
        try:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                image: Image.Image = self.pipe(
                    self.preview_prompt(),
                    num_inference_steps=self.config.preview_steps,
                    height=self.resolution,
                    width=self.resolution,
                    generator=torch.Generator("cpu").manual_seed(self.config.seed),
                ).images[0]
        finally:
            if installed and self.recorder is not None:
                self.recorder.install(self.unet)
        return image

    def _final_losses(self) -> dict[str, float]:
        names = sorted({name for entry in self.history for name in entry})
        return {
            name: sum(values) / len(values)
            for name in names
            if (values := [entry[name] for entry in self.history if name in entry])
        }

    def _finish_modules(self) -> None:
        """Puts the pipeline back into inference shape: recorder off, tokens merged into the embeddings."""
        if self.recorder is not None:
            self.recorder.remove()
        for encoder, wrapper in zip(self.text_encoders, self.token_rows, strict=True):
            encoder.set_input_embeddings(wrapper.merged())
        self.unet.eval()
        for encoder in self.text_encoders:
            encoder.eval()


def train(config: TrainConfig, progress: ProgressCallback | None = None) -> TrainResult:
    """Runs a training job; see TrainConfig for the settings."""
    return Trainer(config, progress).run()
