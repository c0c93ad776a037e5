"""What training changes: new token rows beside the frozen vocabulary, and LoRA adapters.

Only these parameters ever receive gradients; the base weights, the VAE and the original
vocabulary stay bit-identical to the base model (tested).
"""

from __future__ import annotations

from typing import Any

import torch
from peft import LoraConfig
from torch import nn

from personalization.training.config import TrainConfig, TrainingError

UNET_ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]
UNET_GEGLU = ["ff.net.0.proj"]
TEXT_ATTENTION = ["q_proj", "k_proj", "v_proj", "out_proj"]


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


def add_trainable_tokens(
    tokenizers: list[Any],
    text_encoders: list[Any],
    tokens: dict[str, str],
    *,
    config: TrainConfig,
    class_word: str,
    device: torch.device,
) -> list[TrainableTokenRows]:
    """Adds the new tokens to every tokenizer and wraps each text encoder's embedding.

    multiconcept's identity token starts from the init word (the class word by default), as in
    MagiCapture; every other new token starts from a fresh random direction at a typical norm.
    """
    token_rows: list[TrainableTokenRows] = []
    init_word = config.init_word or class_word or "person"
    init_generator = torch.Generator("cpu").manual_seed(config.seed + 1)
    for tokenizer, encoder in zip(tokenizers, text_encoders, strict=True):
        present = [token for token in tokens.values() if token in tokenizer.get_vocab()]
        if present:
            raise TrainingError(f"the base tokenizer already has {', '.join(present)}: choose other tokens")
        first_new = len(tokenizer)
        tokenizer.add_tokens(list(tokens.values()))
        encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        embedding = encoder.get_input_embeddings()
        weight = embedding.weight.detach().float()[:first_new]
        typical_norm = weight.norm(dim=1).mean()
        rows = []
        for role in tokens:
            if config.method == "multiconcept" and role == "identity":
                ids = tokenizer(init_word, add_special_tokens=False).input_ids
                rows.append(weight[ids].mean(dim=0))
            else:
                # A fresh random direction at a typical norm: a rare token of our own.
                vector = torch.randn(weight.shape[1], generator=init_generator)
                rows.append(vector / vector.norm() * typical_norm)
        with torch.no_grad():
            embedding.weight[first_new:] = torch.stack(rows).to(device, embedding.weight.dtype)
        wrapper = TrainableTokenRows(embedding, first_new)
        wrapper.rows.requires_grad_(False)
        encoder.set_input_embeddings(wrapper)
        token_rows.append(wrapper)
    return token_rows


def add_lora(
    unet: Any, text_encoders: list[Any], config: TrainConfig, device: torch.device
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Adds the method's LoRA adapters; returns the UNet's and the text encoders' LoRA parameters.

    The adapters are initialised from their own seed (seed + 2), so the same seed gives the
    same starting weights whatever else drew random numbers before.
    """
    unet_targets = UNET_ATTENTION + (UNET_GEGLU if config.method == "multiconcept" else [])
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed + 2)
        unet.add_adapter(_lora_config(config, unet_targets))
        if config.method == "multiconcept":
            for encoder in text_encoders:
                encoder.add_adapter(_lora_config(config, TEXT_ATTENTION))
    unet_lora = [p for n, p in unet.named_parameters() if "lora_" in n]
    text_lora = [p for encoder in text_encoders for n, p in encoder.named_parameters() if "lora_" in n]
    for parameter in unet_lora + text_lora:
        parameter.data = parameter.data.float()  # fp32 master weights under bf16 autocast
        parameter.requires_grad_(False)
    return unet_lora, text_lora


def _lora_config(config: TrainConfig, targets: list[str]) -> LoraConfig:
    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha(),
        init_lora_weights="gaussian",
        target_modules=targets,
    )
