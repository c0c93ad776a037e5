"""The two training methods on one engine: LIPE's identity prior and MagiCapture's identity + style.

identity (LIPE stage 1): LoRA on the UNet attention projections, a new identifier token whose
embedding stays fixed (so the text side is frozen and every caption is encoded once), the
action-descriptive captions from `prepare`, optional prior preservation on a cached class set.

multiconcept (MagiCapture): phase 1 learns only the new token embeddings ([V1] identity from
the class word, [V2] style at random) with the masked source and reference losses; phase 2
trains LoRA (UNet attention + GEGLU, text encoder attention) and the embeddings with the masked
losses, composed prompts (source : reference : composed exactly 1:1:1 over steps, the composed
loss outside the face only), attention refocusing on the quarter-resolution cross-attention
maps and, when a face-recognition network is configured, the identity loss.

Only LoRA parameters and the new embedding rows change: the base weights are frozen, and the
new rows live in a separate parameter, so the original embedding rows are never touched.
Every random draw comes from one seeded generator saved in checkpoints, which is what makes
`resume` reproduce an uninterrupted run exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import DDPMScheduler
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from PIL import Image
from torch import nn
from torch.nn import functional

from personalization import artifacts
from personalization.attention import AttentionController, cross_attention_layers
from personalization.dataset import DatasetError, PreparedDataset, load_image_tensor, load_mask_tensor
from personalization.losses import (
    attention_refocus_loss,
    crop_faces,
    identity_loss,
    load_identity_embedder,
    masked_mse,
    predicted_original,
)
from personalization.models import base_model_revision, load_pipeline, pick_device, pipeline_kind
from personalization.prior import base_model_key, class_image_set, default_cache_dir

logger = logging.getLogger(__name__)

Method = Literal["identity", "multiconcept"]
CHECKPOINTS_DIR = "checkpoints"
UNET_ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]
UNET_GEGLU = ["ff.net.0.proj"]
TEXT_ATTENTION = ["q_proj", "k_proj", "v_proj", "out_proj"]
LOSS_WINDOW = 10  # final losses: mean of each component over the last steps

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


class TrainingError(ValueError):
    """A configuration or state training refuses to start from, with the reason."""


@dataclass
class TrainConfig:
    method: Method
    base_model: str
    images: Path
    out: Path
    style_images: Path | None = None
    steps: int | None = None  # total; default 800 (identity) or 1200 + 1500 (multiconcept)
    phase1_steps: int | None = None  # multiconcept: embeddings-only steps (default 4/9 of the total)
    rank: int = 4
    lora_alpha: float | None = None  # default: the rank (scale 1)
    unet_lr: float = 1e-4
    text_lr: float = 1e-5
    embedding_lr: float = 5e-4
    weight_decay: float = 1e-3
    max_grad_norm: float = 1.0
    batch_size: int = 1
    seed: int = 0
    prior_preservation: bool = False
    num_class_images: int = 100
    prior_loss_weight: float = 1.0
    class_image_steps: int = 30
    cache_dir: Path | None = None
    attention_loss_weight: float = 2.5
    identity_loss_weight: float = 0.25
    identity_embedder: Path | None = None
    identity_max_timestep: float = 0.8
    init_word: str | None = None  # [V1] starts from this word's embedding (default: the class word)
    gradient_checkpointing: bool = False
    compile: bool = False
    mixed_precision: Literal["auto", "no", "bf16"] = "auto"
    device: str | None = None
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    preview_every: int = 0
    preview_steps: int = 20
    validation_repeats: int = 2  # fixed-draw reconstruction loss before and after (0: off)
    resume: bool = False

    def total_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        return 800 if self.method == "identity" else 1200 + 1500

    def embedding_steps(self) -> int:
        if self.method == "identity":
            return 0
        if self.phase1_steps is not None:
            return self.phase1_steps
        return 1200 if self.steps is None else round(self.total_steps() * 1200 / 2700)

    def hyperparameters(self) -> dict[str, Any]:
        skip = {"base_model", "images", "style_images", "out", "resume", "device", "cache_dir"}
        values = {key: value for key, value in dataclasses.asdict(self).items() if key not in skip}
        values.update(steps=self.total_steps(), phase1_steps=self.embedding_steps(), lora_alpha=self.alpha())
        return {key: str(value) if isinstance(value, Path) else value for key, value in values.items()}

    def alpha(self) -> float:
        return float(self.lora_alpha if self.lora_alpha is not None else self.rank)


@dataclass(frozen=True)
class TrainProgress:
    """One progress report; the callback may return "stop" to end training cleanly after it."""

    step: int
    total: int
    phase: str
    losses: dict[str, float]
    learning_rates: dict[str, float]
    eta_seconds: float
    elapsed_seconds: float
    preview: Image.Image | None = None
    notices: tuple[str, ...] = ()


ProgressCallback = Callable[[TrainProgress], str | None]


@dataclass
class TrainResult:
    status: Literal["completed", "stopped"]
    steps: int
    out_dir: Path
    final_losses: dict[str, float]
    notices: list[str]
    checkpoint: Path | None = None
    manifest: artifacts.TrainedManifest | None = None
    validation_losses: dict[str, dict[str, float]] = field(default_factory=dict)


class TrainableTokenRows(nn.Module):
    """An embedding whose rows from `first_new` on are a separate (trainable) parameter.

    Gradients then never reach the original vocabulary, and optimizer weight decay cannot
    move it either: the frozen rows stay bit-identical by construction.
    """

    def __init__(self, base: nn.Embedding, first_new: int) -> None:
        super().__init__()
        self.base = base
        self.first_new = first_new
        self.rows = nn.Parameter(base.weight.detach()[first_new:].clone().float())

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.base(input_ids.clamp(max=self.first_new - 1))
        is_new = input_ids >= self.first_new
        if not bool(is_new.any()):
            return out
        new = self.rows.to(out.dtype)[(input_ids - self.first_new).clamp(min=0)]
        return torch.where(is_new[..., None], new, out)

    def merged(self) -> nn.Embedding:
        with torch.no_grad():
            self.base.weight[self.first_new :] = self.rows.to(self.base.weight.dtype)
        return self.base


@dataclass
class _Sample:
    kind: str  # instance | prior | source | reference | composed
    latent_mean: torch.Tensor
    latent_std: torch.Tensor
    prompt: str
    recon_mask: torch.Tensor | None = None  # latent resolution
    face_mask: torch.Tensor | None = None
    style_mask: torch.Tensor | None = None
    face_box: tuple[float, float, float, float] | None = None


@dataclass
class _Cached:
    mean: torch.Tensor
    std: torch.Tensor
    face_mask: torch.Tensor
    style_mask: torch.Tensor | None
    caption: str
    face_box: tuple[float, float, float, float] | None
    pixels: torch.Tensor | None = None


@dataclass
class _Phase:
    name: str
    kinds: tuple[str, ...]
    optimizer: torch.optim.Optimizer
    groups: dict[str, list[nn.Parameter]] = field(default_factory=dict)


# Settings that do not change the numbers a run computes: a resumed run may differ in them.
_NOT_FINGERPRINTED = {
    "checkpoint_every",
    "keep_checkpoints",
    "preview_every",
    "preview_steps",
    "compile",
    "gradient_checkpointing",
}


def _fingerprint(config: TrainConfig, dataset_hashes: list[str]) -> str:
    settings = {
        key: value for key, value in config.hyperparameters().items() if key not in _NOT_FINGERPRINTED
    }
    payload = json.dumps([config.base_model, settings, dataset_hashes], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class Trainer:
    """Runs one training job; `pipe` afterwards is the trained pipeline (LoRA active, tokens merged)."""

    def __init__(self, config: TrainConfig, progress: ProgressCallback | None = None) -> None:
        self.config = config
        self.progress = progress
        self.notices: list[str] = []
        self._validate()
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
        self.resolution = self.source.resolution
        self.generator = torch.Generator("cpu").manual_seed(config.seed)
        self.history: list[dict[str, float]] = []
        self.elapsed_before = 0.0
        self.validation_before: dict[str, float] = {}
        self.class_generated = 0  # class images this run had to generate (the rest came from the cache)
        self.pipe: Any = None

    # ---- configuration -------------------------------------------------------------------------

    def _validate(self) -> None:
        config = self.config
        if config.method not in ("identity", "multiconcept"):
            raise TrainingError(f"unknown method {config.method!r} (identity or multiconcept)")
        if config.method == "multiconcept" and config.style_images is None:
            raise TrainingError("multiconcept needs --style-images (a folder prepared with --style)")
        if config.method == "identity" and config.style_images is not None:
            raise TrainingError("style images belong to the multiconcept method")
        if config.total_steps() < 1 or config.batch_size < 1 or config.rank < 1:
            raise TrainingError("steps, batch size and rank must be positive")
        if config.method == "multiconcept" and not 0 <= config.embedding_steps() <= config.total_steps():
            raise TrainingError("phase-1 steps must lie between 0 and the total steps")

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
        self.class_images: list[tuple[_Cached, str]] = []
        if config.method == "identity" and config.prior_preservation:
            self._prepare_class_set()  # the base model, before any token or LoRA is added
        self._add_tokens()
        self._add_lora()
        self.recorder: AttentionController | None = None
        if config.method == "multiconcept":
            latent_side = self.resolution // int(self.pipe.vae_scale_factor)
            self.recorder = AttentionController(
                latent_size=(latent_side, latent_side), record=cross_attention_layers(self.unet)
            )
        self.embedder: Any = None
        if config.method == "multiconcept":
            if config.identity_embedder is None:
                self._notice(
                    "identity loss off: no face-recognition network configured (--identity-embedder)"
                )
            else:
                self.embedder = load_identity_embedder(config.identity_embedder, self.device)
        elif config.identity_embedder is not None:
            self._notice("--identity-embedder is used by the multiconcept method only; ignored")
        self.source_cache = self._cache_dataset(self.source)
        self.style_cache = self._cache_dataset(self.style) if self.style is not None else []
        self.reference_identity = self._reference_identity() if self.embedder is not None else None
        self.text_frozen = config.method == "identity"
        self.text_cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._warn_long_prompts([item.caption for item in self.source_cache + self.style_cache])
        if self.text_frozen:
            prompts = [item.caption for item in self.source_cache] + [
                prompt for _, prompt in self.class_images
            ]
            with torch.no_grad():
                for prompt in prompts:
                    if prompt not in self.text_cache:
                        embeds, pooled = self._encode([prompt])
                        self.text_cache[prompt] = (embeds[0], None if pooled is None else pooled[0])
        if config.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            if not self.text_frozen:
                for encoder in self.text_encoders:
                    encoder.gradient_checkpointing_enable()
        self.unet.train()
        for encoder in self.text_encoders:
            encoder.train(not self.text_frozen)
        self.unet_forward = torch.compile(self.unet) if config.compile else self.unet

    def _prepare_class_set(self) -> None:
        config = self.config
        cache_root = config.cache_dir or default_cache_dir()
        key = base_model_key(config.base_model, base_model_revision(config.base_model))
        images, generated = class_image_set(
            self.pipe,
            model_key=key,
            class_word=self.source.class_word or "person",
            count=config.num_class_images,
            resolution=self.resolution,
            steps=config.class_image_steps,
            seed=config.seed,
            cache_root=cache_root,
        )
        logger.info(
            "class set: %d images (%d generated, %d cached)", len(images), generated, len(images) - generated
        )
        self.class_generated = generated
        for image in images:
            pixels = load_image_tensor(image.path)[None].to(self.device, self.weight_dtype)
            mean, std = self._encode_pixels(pixels)
            full = torch.ones(1, *mean.shape[-2:], device=self.device)
            cached = _Cached(
                mean=mean, std=std, face_mask=full, style_mask=None, caption=image.prompt, face_box=None
            )
            self.class_images.append((cached, image.prompt))

    def _new_token_rows(self) -> dict[str, str]:
        tokens = {"identity": self.source.token}
        if self.style is not None:
            tokens["style"] = self.style.token
        return tokens

    def _add_tokens(self) -> None:
        config = self.config
        self.tokens = self._new_token_rows()
        self.token_rows: list[TrainableTokenRows] = []
        init_word = config.init_word or self.source.class_word or "person"
        init_generator = torch.Generator("cpu").manual_seed(config.seed + 1)
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders, strict=True):
            present = [token for token in self.tokens.values() if token in tokenizer.get_vocab()]
            if present:
                raise TrainingError(
                    f"the base tokenizer already has {', '.join(present)}: choose other tokens"
                )
            first_new = len(tokenizer)
            tokenizer.add_tokens(list(self.tokens.values()))
            encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            embedding = encoder.get_input_embeddings()
            weight = embedding.weight.detach().float()[:first_new]
            typical_norm = weight.norm(dim=1).mean()
            rows = []
            for role in self.tokens:
                if config.method == "multiconcept" and role == "identity":
                    ids = tokenizer(init_word, add_special_tokens=False).input_ids
                    rows.append(weight[ids].mean(dim=0))
                else:
                    # A fresh random direction at a typical norm: a rare token of our own.
                    vector = torch.randn(weight.shape[1], generator=init_generator)
                    rows.append(vector / vector.norm() * typical_norm)
            with torch.no_grad():
                embedding.weight[first_new:] = torch.stack(rows).to(self.device, embedding.weight.dtype)
            wrapper = TrainableTokenRows(embedding, first_new)
            wrapper.rows.requires_grad_(False)
            encoder.set_input_embeddings(wrapper)
            self.token_rows.append(wrapper)
        self.token_ids = {
            role: self.tokenizers[0].convert_tokens_to_ids(token) for role, token in self.tokens.items()
        }

    def _add_lora(self) -> None:
        config = self.config
        unet_targets = UNET_ATTENTION + (UNET_GEGLU if config.method == "multiconcept" else [])
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(config.seed + 2)
            self.unet.add_adapter(self._lora_config(unet_targets))
            if config.method == "multiconcept":
                for encoder in self.text_encoders:
                    encoder.add_adapter(self._lora_config(TEXT_ATTENTION))
        self.unet_lora = [p for n, p in self.unet.named_parameters() if "lora_" in n]
        self.text_lora = [
            p for encoder in self.text_encoders for n, p in encoder.named_parameters() if "lora_" in n
        ]
        for parameter in self.unet_lora + self.text_lora:
            parameter.data = parameter.data.float()  # fp32 master weights under bf16 autocast
            parameter.requires_grad_(False)

    def _lora_config(self, targets: list[str]) -> LoraConfig:
        return LoraConfig(
            r=self.config.rank,
            lora_alpha=self.config.alpha(),
            init_lora_weights="gaussian",
            target_modules=targets,
        )

    def _encode_pixels(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            distribution = self.vae.encode(pixels).latent_dist
        return distribution.mean.float(), distribution.std.float()

    def _to_latent(self, mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return functional.interpolate(mask[None].float(), size=size, mode="area")[0].clamp_min(0.01)

    def _cache_dataset(self, dataset: PreparedDataset) -> list[_Cached]:
        cached = []
        for item in dataset.items:
            pixels = load_image_tensor(item.image)[None].to(self.device, self.weight_dtype)
            mean, std = self._encode_pixels(pixels)
            size = (mean.shape[-2], mean.shape[-1])
            face = self._to_latent(load_mask_tensor(item.face_mask).to(self.device), size)
            style = (
                self._to_latent(load_mask_tensor(item.style_mask).to(self.device), size)
                if item.style_mask is not None
                else None
            )
            cached.append(
                _Cached(
                    mean=mean,
                    std=std,
                    face_mask=face,
                    style_mask=style,
                    caption=item.caption(),
                    face_box=item.face_box,
                    pixels=pixels.float() if self.embedder is not None else None,
                )
            )
        return cached

    def _reference_identity(self) -> torch.Tensor:
        crops = [
            crop_faces(item.pixels, torch.tensor([item.face_box]))
            for item in self.source_cache
            if item.face_box is not None and item.pixels is not None
        ]
        with torch.no_grad():
            embeddings = self.embedder(torch.cat(crops).to(self.device)).float()
        return functional.normalize(embeddings, dim=-1).mean(dim=0)

    # ---- text ----------------------------------------------------------------------------------

    def _warn_long_prompts(self, prompts: list[str]) -> None:
        limit = self.tokenizers[0].model_max_length
        for prompt in prompts:
            length = len(self.tokenizers[0](prompt).input_ids)
            if length > limit:
                logger.warning("caption of %d tokens is cut to %d: %r", length, limit, prompt)

    def _token_ids(self, tokenizer: Any, prompts: list[str]) -> torch.Tensor:
        return tokenizer(
            prompts,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prompt embeddings the way the pipelines compute them (SDXL: penultimate layers, pooled)."""
        if self.kind == "sd15":
            return self.text_encoders[0](self._token_ids(self.tokenizers[0], prompts))[0], None
        hidden = []
        pooled = None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders, strict=True):
            output = encoder(self._token_ids(tokenizer, prompts), output_hidden_states=True)
            hidden.append(output.hidden_states[-2])
            pooled = output[0]
        return torch.cat(hidden, dim=-1), pooled

    def _conditioning(self, prompts: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        if self.text_frozen:
            embeds = torch.stack([self.text_cache[prompt][0] for prompt in prompts])
            pooled_list = [pooled for prompt in prompts if (pooled := self.text_cache[prompt][1]) is not None]
            pooled = torch.stack(pooled_list) if pooled_list else None
        else:
            embeds, pooled = self._encode(prompts)
        if self.kind == "sd15":
            return embeds, None
        size = float(self.resolution)
        time_ids = torch.tensor([[size, size, 0.0, 0.0, size, size]], device=self.device).repeat(
            len(prompts), 1
        )
        assert pooled is not None
        return embeds, {"text_embeds": pooled, "time_ids": time_ids.to(embeds.dtype)}

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
        config = self.config
        rows = [wrapper.rows for wrapper in self.token_rows]
        for parameter in self.unet_lora + self.text_lora + rows:
            parameter.requires_grad_(False)
        if name == "identity":
            groups = {"unet_lora": self.unet_lora}
            specs: list[dict[str, Any]] = [
                {"params": self.unet_lora, "lr": config.unet_lr, "weight_decay": config.weight_decay}
            ]
            kinds: tuple[str, ...] = ("instance",)
        elif name == "embeddings":
            groups = {"embeddings": rows}
            specs = [{"params": rows, "lr": config.embedding_lr, "weight_decay": 0.0}]
            kinds = ("source", "reference")
        else:
            groups = {"unet_lora": self.unet_lora, "text_lora": self.text_lora, "embeddings": rows}
            specs = [
                {"params": self.unet_lora, "lr": config.unet_lr, "weight_decay": config.weight_decay},
                {"params": self.text_lora, "lr": config.text_lr, "weight_decay": config.weight_decay},
                {"params": rows, "lr": config.text_lr, "weight_decay": 0.0},
            ]
            kinds = ("source", "reference", "composed")
        for params in groups.values():
            for parameter in params:
                parameter.requires_grad_(True)
        for spec, group_name in zip(specs, groups, strict=True):
            spec["name"] = group_name
        if self.recorder is not None:
            if name == "joint":
                self.recorder.install(self.unet)
            else:
                self.recorder.remove()
        return _Phase(name=name, kinds=kinds, optimizer=self._make_optimizer(specs), groups=groups)

    # ---- batches and losses --------------------------------------------------------------------

    def _pick(self, count: int) -> int:
        return int(torch.randint(count, (1,), generator=self.generator))

    def _batch(self, step: int, phase: _Phase) -> list[_Sample]:
        config = self.config
        samples = []
        for slot in range(config.batch_size):
            kind = phase.kinds[(step * config.batch_size + slot) % len(phase.kinds)]
            if kind in ("instance", "source"):
                item = self.source_cache[self._pick(len(self.source_cache))]
                samples.append(
                    _Sample(
                        kind,
                        item.mean,
                        item.std,
                        item.caption,
                        recon_mask=item.face_mask if kind == "source" else None,
                        face_mask=item.face_mask,
                    )
                )
            else:
                item = self.style_cache[self._pick(len(self.style_cache))]
                prompt = item.caption
                if kind == "composed":
                    template = COMPOSED_TEMPLATES[self._pick(len(COMPOSED_TEMPLATES))]
                    prompt = template.format(
                        identity=self.tokens["identity"],
                        style=self.tokens["style"],
                        cls=self.source.class_word,
                    )
                samples.append(
                    _Sample(
                        kind,
                        item.mean,
                        item.std,
                        prompt,
                        recon_mask=item.style_mask,
                        face_mask=item.face_mask if item.face_box is not None else None,
                        style_mask=item.style_mask,
                        face_box=item.face_box,
                    )
                )
        if phase.name == "identity" and self.class_images:
            for _ in range(config.batch_size):
                cached, prompt = self.class_images[self._pick(len(self.class_images))]
                samples.append(_Sample("prior", cached.mean, cached.std, prompt))
        return samples

    def _predict(
        self, samples: list[_Sample], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """One denoising prediction per sample; every random draw comes from `generator`."""
        mean = torch.cat([sample.latent_mean for sample in samples])
        std = torch.cat([sample.latent_std for sample in samples])
        draw = torch.randn(mean.shape, generator=generator).to(self.device)
        latents = (mean + std * draw) * self.vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator).to(self.device)
        timesteps = torch.randint(
            0, self.scheduler.config.num_train_timesteps, (len(samples),), generator=generator
        ).to(self.device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        prediction_type = self.scheduler.config.prediction_type
        target = (
            noise if prediction_type == "epsilon" else self.scheduler.get_velocity(latents, noise, timesteps)
        )
        prompts = [sample.prompt for sample in samples]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            embeds, added = self._conditioning(prompts)
            if self.recorder is not None:
                self.recorder.recorded.clear()
            prediction = self.unet_forward(
                noisy.to(self.weight_dtype), timesteps, embeds, added_cond_kwargs=added
            ).sample
        return prediction.float(), target.float(), noisy, timesteps, prompts

    def validation_losses(self) -> dict[str, float]:
        """Reconstruction losses on fixed draws over every photo: comparable before and after training.

        Training losses are single random draws; this fixed set is what shows a run learned.
        """
        samples: list[_Sample] = []
        for item in self.source_cache:
            kind = "instance" if self.config.method == "identity" else "source"
            samples.append(_Sample(kind, item.mean, item.std, item.caption, recon_mask=item.face_mask))
        for item in self.style_cache:
            samples.append(
                _Sample("reference", item.mean, item.std, item.caption, recon_mask=item.style_mask)
            )
            composed = COMPOSED_TEMPLATES[0].format(
                identity=self.tokens["identity"], style=self.tokens["style"], cls=self.source.class_word
            )
            samples.append(_Sample("composed", item.mean, item.std, composed, recon_mask=item.style_mask))
        generator = torch.Generator("cpu").manual_seed(self.config.seed + 3)
        totals: dict[str, list[float]] = {}
        with torch.no_grad():
            for _ in range(self.config.validation_repeats):
                for sample in samples:
                    prediction, target, *_ = self._predict([sample], generator)
                    mask = (
                        sample.recon_mask if sample.recon_mask is not None else torch.ones_like(target[:, :1])
                    )
                    loss = masked_mse(prediction, target, mask[None] if mask.ndim == 3 else mask)
                    totals.setdefault(sample.kind, []).append(float(loss[0]))
        return {kind: sum(values) / len(values) for kind, values in totals.items()}

    def _losses(self, samples: list[_Sample], phase: _Phase) -> tuple[torch.Tensor, dict[str, float]]:
        config = self.config
        prediction, target, noisy, timesteps, prompts = self._predict(samples, self.generator)
        parts: dict[str, torch.Tensor] = {}
        kinds = [sample.kind for sample in samples]
        if phase.name == "identity":
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
                    parts[kind] = per_sample[chosen].mean()
            if phase.name == "joint":
                parts["attention"] = config.attention_loss_weight * self._refocus(samples, prompts)
                if self.embedder is not None:
                    identity = self._identity_term(samples, noisy, prediction, timesteps)
                    if identity is not None:
                        parts["identity"] = config.identity_loss_weight * identity
        total = torch.stack(list(parts.values())).sum()
        reported = {name: float(value.detach()) for name, value in parts.items()}
        reported["total"] = float(total.detach())
        return total, reported

    def _refocus(self, samples: list[_Sample], prompts: list[str]) -> torch.Tensor:
        assert self.recorder is not None
        ids = self._token_ids(self.tokenizers[0], prompts)
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

    def _identity_term(
        self, samples: list[_Sample], noisy: torch.Tensor, prediction: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor | None:
        limit = self.config.identity_max_timestep * self.scheduler.config.num_train_timesteps
        chosen = [
            index
            for index, sample in enumerate(samples)
            if sample.kind == "composed" and sample.face_box is not None and float(timesteps[index]) < limit
        ]
        if not chosen or self.reference_identity is None:
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
        boxes = torch.tensor([samples[i].face_box for i in chosen])
        return identity_loss(
            self.embedder, crop_faces(images.clamp(-1, 1), boxes), self.reference_identity
        ).mean()

    # ---- checkpoints ---------------------------------------------------------------------------

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        state = {f"unet.{n}": p for n, p in self.unet.named_parameters() if "lora_" in n}
        for index, encoder in enumerate(self.text_encoders):
            state.update({f"text{index}.{n}": p for n, p in encoder.named_parameters() if "lora_" in n})
        for index, wrapper in enumerate(self.token_rows):
            state[f"rows{index}"] = wrapper.rows
        return state

    def _checkpoint_dir(self) -> Path:
        return self.config.out / CHECKPOINTS_DIR

    def _save_checkpoint(self, step: int, phase: _Phase, elapsed: float) -> Path:
        folder = self._checkpoint_dir()
        folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "step": step,
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
        path = folder / f"step-{step:07d}.pt"
        partial = path.with_suffix(".partial")
        torch.save(payload, partial)
        partial.replace(path)
        for old in sorted(folder.glob("step-*.pt"))[: -self.config.keep_checkpoints]:
            old.unlink()
        return path

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self._checkpoint_dir().glob("step-*.pt"))
        return found[-1] if found else None

    def _restore(self, path: Path) -> tuple[int, dict[str, Any]]:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload["fingerprint"] != self.fingerprint:
            raise TrainingError(
                f"{path} belongs to a run with other settings or data: resume needs the same configuration"
            )
        current = self._trainable_state()
        with torch.no_grad():
            for name, value in payload["trainable"].items():
                current[name].copy_(value.to(current[name].device))
        self.generator.set_state(payload["generator"])
        self.history = list(payload["history"])
        self.elapsed_before = float(payload["elapsed"])
        return int(payload["step"]), payload

    # ---- the run -------------------------------------------------------------------------------

    def _check_out_dir(self) -> None:
        out = self.config.out
        has_checkpoints = self._checkpoint_dir().is_dir() and any(self._checkpoint_dir().glob("step-*.pt"))
        if self.config.resume and not has_checkpoints:
            raise TrainingError(f"nothing to resume in {out}: it has no checkpoint")
        if self.config.resume and (out / artifacts.MANIFEST_NAME).exists():
            raise TrainingError(f"{out} holds a finished run: there is nothing left to resume")
        if not self.config.resume and (has_checkpoints or (out / artifacts.MANIFEST_NAME).exists()):
            raise TrainingError(
                f"{out} holds an earlier run: pass --resume to continue it, or choose another --out"
            )

    def run(self) -> TrainResult:
        self._check_out_dir()
        started = time.monotonic()
        self._setup()
        hashes = [self.source.hash()] + ([self.style.hash()] if self.style is not None else [])
        self.fingerprint = _fingerprint(self.config, hashes)
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
            loss, reported = self._losses(self._batch(step, phase), phase)
            loss.backward()
            parameters = [p for params in phase.groups.values() for p in params]
            torch.nn.utils.clip_grad_norm_(parameters, self.config.max_grad_norm)
            phase.optimizer.step()
            phase.optimizer.zero_grad(set_to_none=True)
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
        manifest = self._write_outputs(step, self.elapsed_before + time.monotonic() - started, validation)
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
            return COMPOSED_TEMPLATES[0].format(
                identity=self.tokens["identity"], style=self.tokens["style"], cls=cls
            )
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

    def _write_outputs(
        self, steps: int, wall_time: float, validation: dict[str, dict[str, float]]
    ) -> artifacts.TrainedManifest:
        config = self.config
        config.out.mkdir(parents=True, exist_ok=True)
        first_new = [wrapper.first_new for wrapper in self.token_rows]
        embeddings = {}
        for offset, (role, token) in enumerate(self.tokens.items()):
            vectors = [
                encoder.get_input_embeddings().weight[start + offset]
                for encoder, start in zip(self.text_encoders, first_new, strict=True)
            ]
            embeddings[role] = (token, vectors)
        text_lora = {}
        if config.method == "multiconcept":
            names = ["text_encoder", "text_encoder_2"]
            for name, encoder in zip(names, self.text_encoders, strict=False):
                text_lora[name] = get_peft_model_state_dict(encoder, save_embedding_layers=False)
        files = artifacts.write_artifacts(
            config.out,
            kind=self.kind,
            unet_lora=get_peft_model_state_dict(self.unet),
            text_lora=text_lora,
            lora_alpha=config.alpha(),
            embeddings=embeddings,
        )
        import diffusers
        import peft
        import transformers

        manifest = artifacts.TrainedManifest(
            base_model=str(config.base_model),
            base_model_revision=base_model_revision(config.base_model),
            model_kind=self.kind,
            method=config.method,
            tokens=dict(self.tokens),
            class_word=self.source.class_word,
            resolution=self.resolution,
            hyperparameters=config.hyperparameters(),
            dataset_hash=self.source.hash(),
            style_dataset_hash=self.style.hash() if self.style is not None else None,
            final_losses=self._final_losses(),
            validation_losses=validation,
            wall_time_s=round(wall_time, 3),
            device=_device_name(self.device),
            default_scales={"unet": 0.6, "text": 0.9}
            if config.method == "multiconcept"
            else {"unet": 1.0, "text": 1.0},
            files=files,
            steps=steps,
            notices=list(self.notices),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            library_versions={
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "peft": peft.__version__,
                "transformers": transformers.__version__,
            },
        )
        artifacts.write_manifest(config.out, manifest)
        return manifest


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return "cpu"


def train(config: TrainConfig, progress: ProgressCallback | None = None) -> TrainResult:
    """Runs a training job; see TrainConfig for the settings."""
    return Trainer(config, progress).run()
