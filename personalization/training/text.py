"""Prompt conditioning during training, computed the way the pipelines compute it.

With the text side frozen (identity) every caption's embedding is encoded once and reused;
otherwise prompts are encoded every step, through the LoRA-carrying text encoders.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from personalization.models import ModelKind

logger = logging.getLogger(__name__)


class PromptEncoder:
    def __init__(
        self,
        kind: ModelKind,
        tokenizers: list[Any],
        text_encoders: list[Any],
        device: torch.device,
        resolution: int,
        *,
        frozen: bool,
    ) -> None:
        self.kind = kind
        self.tokenizers = tokenizers
        self.text_encoders = text_encoders
        self.device = device
        self.resolution = resolution
        self.frozen = frozen
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def warn_long_prompts(self, prompts: list[str]) -> None:
        limit = self.tokenizers[0].model_max_length
        for prompt in prompts:
            length = len(self.tokenizers[0](prompt).input_ids)
            if length > limit:
                logger.warning("caption of %d tokens is cut to %d: %r", length, limit, prompt)

    def precompute(self, prompts: list[str]) -> None:
        """Encodes the prompts once (frozen text side only): their embeddings never change."""
        with torch.no_grad():
            for prompt in prompts:
                if prompt not in self.cache:
                    embeds, pooled = self.encode([prompt])
                    self.cache[prompt] = (embeds[0], None if pooled is None else pooled[0])

    def token_ids(self, tokenizer: Any, prompts: list[str]) -> torch.Tensor:
        return tokenizer(
            prompts,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prompt embeddings the way the pipelines compute them (SDXL: penultimate layers, pooled)."""
        if self.kind == "sd15":
            return self.text_encoders[0](self.token_ids(self.tokenizers[0], prompts))[0], None
        hidden = []
        pooled = None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders, strict=True):
            output = encoder(self.token_ids(tokenizer, prompts), output_hidden_states=True)
            hidden.append(output.hidden_states[-2])
            pooled = output[0]
        return torch.cat(hidden, dim=-1), pooled

    def conditioning(self, prompts: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        if self.frozen:
            embeds = torch.stack([self.cache[prompt][0] for prompt in prompts])
            pooled_list = [pooled for prompt in prompts if (pooled := self.cache[prompt][1]) is not None]
            pooled = torch.stack(pooled_list) if pooled_list else None
        else:
            embeds, pooled = self.encode(prompts)
        if self.kind == "sd15":
            return embeds, None
        size = float(self.resolution)
        time_ids = torch.tensor([[size, size, 0.0, 0.0, size, size]], device=self.device).repeat(
            len(prompts), 1
        )
        assert pooled is not None
        return embeds, {"text_embeds": pooled, "time_ids": time_ids.to(embeds.dtype)}
