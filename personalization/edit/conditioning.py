"""Prompt conditioning of the edit's UNet calls, for SD 1.5 and SDXL alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Conditioning:
    embeds: torch.Tensor
    pooled: torch.Tensor | None
    time_ids: torch.Tensor | None

    def take(self, rows: Sequence[int]) -> Conditioning:
        index = list(rows)
        return Conditioning(
            self.embeds[index],
            None if self.pooled is None else self.pooled[index],
            None if self.time_ids is None else self.time_ids[index],
        )

    def unet_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"encoder_hidden_states": self.embeds}
        if self.pooled is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": self.pooled, "time_ids": self.time_ids}
        return kwargs


def _is_xl(pipe: Any) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None or hasattr(pipe, "tokenizer_2")


def encode_prompts(pipe: Any, prompts: Sequence[str], negative: str, size: tuple[int, int]) -> Conditioning:
    """Rows: the negative prompt's embedding first, then one per prompt (the pipelines' own encoders)."""
    device = pipe._execution_device
    embeds: list[torch.Tensor] = []
    pooled: list[torch.Tensor] = []
    for index, prompt in enumerate(prompts):
        out = pipe.encode_prompt(
            prompt=prompt,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=negative or None,
        )
        if index == 0:
            embeds.append(out[1])
            if _is_xl(pipe):
                pooled.append(out[3])
        embeds.append(out[0])
        if _is_xl(pipe):
            pooled.append(out[2])
    if not _is_xl(pipe):
        return Conditioning(torch.cat(embeds), None, None)
    height, width = size
    projection = (
        int(pooled[0].shape[-1])
        if pipe.text_encoder_2 is None
        else int(pipe.text_encoder_2.config.projection_dim)
    )
    time_ids = pipe._get_add_time_ids(
        (height, width),
        (0, 0),
        (height, width),
        dtype=embeds[0].dtype,
        text_encoder_projection_dim=projection,
    ).to(device)
    return Conditioning(torch.cat(embeds), torch.cat(pooled), time_ids.repeat(len(embeds), 1))
