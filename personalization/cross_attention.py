"""Recording cross-attention maps of a UNet, with gradients, for chosen layers only.

MagiCapture's attention refocusing needs the softmaxed text-to-image attention of the
identifier tokens at the "16x16" level, differentiably. Selected cross-attention layers get
a processor that computes attention explicitly and keeps the head-averaged probabilities;
all other layers keep PyTorch's fused SDPA, and removing the recorder restores the original
processors, so normal inference pays nothing.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import torch
from diffusers.models.attention_processor import Attention

# A quarter of the latent side: the 16x16 maps of SD 1.5 at 512 px, 32x32 of SDXL at 1024 px,
# 8x8 of the tiny model at 64 px.
REFOCUS_LEVEL = 2


def cross_attention_layers(unet: Any, level: int = REFOCUS_LEVEL) -> list[str]:
    """Names of the cross-attention processors of the down and up blocks working at latent / 2**level.

    down_blocks[i] works at latent / 2**i; up_blocks[j] at latent / 2**(n - 1 - j). The mid block
    is left out, as in MagiCapture's code.
    """
    up_count = len(unet.up_blocks)
    prefixes = (f"down_blocks.{level}.", f"up_blocks.{up_count - 1 - level}.")
    names = [
        name
        for name in unet.attn_processors
        if name.endswith("attn2.processor") and name.startswith(prefixes)
    ]
    if not names:
        raise ValueError(f"the UNet has no cross-attention at level {level} (latent / {2**level})")
    return names


class _RecordingProcessor:
    """diffusers' classic attention computation, keeping the head-averaged probabilities."""

    def __init__(self, recorder: CrossAttentionRecorder, name: str) -> None:
        self.recorder = recorder
        self.name = name

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        if hidden_states.ndim != 3 or encoder_hidden_states is None:
            raise ValueError(f"{self.name}: only token-sequence cross-attention can be recorded")
        batch_size, sequence_length, _ = encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(attn.head_to_batch_dim(query), key, attention_mask)
        self.recorder.maps[self.name] = probs.view(batch_size, attn.heads, *probs.shape[1:]).mean(dim=1)
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


class CrossAttentionRecorder:
    """Installs recording processors on `layers`; `maps[name]` is (batch, pixels, tokens) after a forward.

    Use as a context manager, or install()/remove() around a training phase.
    """

    def __init__(self, unet: Any, layers: list[str] | None = None) -> None:
        self.unet = unet
        self.layers = layers if layers is not None else cross_attention_layers(unet)
        self.maps: dict[str, torch.Tensor] = {}
        self._original: dict[str, Any] | None = None

    def install(self) -> None:
        if self._original is not None:
            return
        self._original = dict(self.unet.attn_processors)
        processors = dict(self._original)
        for name in self.layers:
            processors[name] = _RecordingProcessor(self, name)
        self.unet.set_attn_processor(processors)

    def remove(self) -> None:
        if self._original is None:
            return
        self.unet.set_attn_processor(self._original)
        self._original = None
        self.maps.clear()

    def __enter__(self) -> CrossAttentionRecorder:
        self.install()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.remove()

    def token_maps(self, positions: torch.Tensor, shape: tuple[int, int] | None = None) -> torch.Tensor:
        """Mean over the recorded layers of each sample's maps for chosen token positions.

        positions: (batch, K) long, the index of token k in sample b's prompt.
        shape: the maps' (height, width); square when not given.
        Returns (batch, K, height, width).
        """
        if not self.maps:
            raise RuntimeError("no cross-attention recorded: run the UNet with the recorder installed")
        stacked = torch.stack([self.maps[name] for name in self.layers]).mean(dim=0)  # (B, pixels, tokens)
        side = round(stacked.shape[1] ** 0.5)
        height, width = shape or (side, side)
        if height * width != stacked.shape[1]:
            raise ValueError(f"recorded maps of {stacked.shape[1]} pixels are not {height}x{width}")
        index = positions[:, None, :].expand(-1, stacked.shape[1], -1)
        chosen = torch.gather(stacked, 2, index)  # (B, pixels, K)
        return chosen.permute(0, 2, 1).reshape(positions.shape[0], positions.shape[1], height, width)
