"""Attention control for editing: cross-attention capture and mutual self-attention.

LIPE's identity-aware mask comes from the cross-attention maps of the subject's
identifier token; MasaCtrl keeps a subject's appearance while its pose changes by
letting the edit's self-attention queries read the source's keys and values.
Both need a hand inside the UNet's attention layers, and both are wanted only
while an edit runs. So nothing here is installed permanently: `attention_control`
swaps a processor into the UNet's transformer attention layers for the length of
a `with` block and puts the original processors back on exit. Ordinary generation
never sees these processors and pays nothing for them; inside the block, a layer
with neither capture nor mutual attention active calls the original processor.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as nnf

_BLOCK_ORDER = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}


@dataclass(frozen=True)
class MutualSelfAttention:
    """MasaCtrl's mutual self-attention: which rows read whose keys and values, and from when.

    `source_of` maps a batch row of the edit to the batch row of the source whose
    self-attention keys and values it reads. MasaCtrl starts at step 4 and layer 10
    of SD 1.5's 16 (the decoder side); layers are counted in execution order.
    """

    source_of: dict[int, int]
    start_step: int = 4
    start_layer: int = 10


@dataclass
class AttentionController:
    """Shared state of the processors that `attention_control` installs.

    `capture` maps a batch row to the prompt token positions whose cross-attention
    probabilities are recorded (None: nothing is recorded). Recorded maps are summed
    per layer over the steps they were captured in; `maps()` gives the means with
    shape (rows, h, w) in the order of `capture`'s rows. `step` is set by the sampling
    loop before each UNet call; mutual self-attention compares it with its start step.
    """

    latent_size: tuple[int, int]
    capture: dict[int, list[int]] | None = None
    mutual: MutualSelfAttention | None = None
    step: int = 0
    _sums: dict[str, torch.Tensor] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def reset_maps(self) -> None:
        self._sums.clear()
        self._counts.clear()

    def maps(self) -> dict[str, torch.Tensor]:
        """Mean captured map per layer, float32, shape (len(capture rows), h, w)."""
        return {name: total / self._counts[name] for name, total in self._sums.items()}

    def _record(self, name: str, maps: torch.Tensor) -> None:
        maps = maps.detach().float()
        if name in self._sums:
            self._sums[name] += maps
            self._counts[name] += 1
        else:
            self._sums[name] = maps.clone()
            self._counts[name] = 1

    def spatial_size(self, tokens: int) -> tuple[int, int]:
        """The (h, w) of a layer with `tokens` query positions: the latent halved until it matches.

        The UNet's downsampling convolutions round up, so an odd side halves to its ceiling.
        """
        height, width = self.latent_size
        while height * width > tokens:
            height, width = math.ceil(height / 2), math.ceil(width / 2)
        if height * width != tokens:
            raise ValueError(f"{tokens} query positions do not match latent size {self.latent_size}")
        return height, width


def transformer_attention_layers(unet: nn.Module) -> list[tuple[str, Any]]:
    """The UNet's transformer attention modules (attn1 self, attn2 cross) in execution order.

    Module registration puts up_blocks before mid_block, so the order is rebuilt:
    down blocks, the middle block, then the up blocks, each in their own order.
    """
    layers = [
        (name, module)
        for name, module in unet.named_modules()
        if name.rsplit(".", 1)[-1] in ("attn1", "attn2") and hasattr(module, "set_processor")
    ]
    return sorted(layers, key=lambda item: _BLOCK_ORDER.get(item[0].split(".", 1)[0], 3))


class _ControlledAttnProcessor:
    """Replaces one layer's processor while `attention_control` is active."""

    def __init__(
        self, controller: AttentionController, name: str, self_index: int | None, original: Any
    ) -> None:
        self.controller = controller
        self.name = name
        # Position among the self-attention layers in execution order (None for cross-attention).
        self.self_index = self_index
        self.original = original

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        control = self.controller
        is_cross = encoder_hidden_states is not None
        capture = control.capture if is_cross else None
        mutual = None
        if (
            not is_cross
            and control.mutual is not None
            and self.self_index is not None
            and control.step >= control.mutual.start_step
            and self.self_index >= control.mutual.start_layer
        ):
            mutual = control.mutual
        if capture is None and mutual is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        return self._controlled(
            attn, hidden_states, encoder_hidden_states, attention_mask, temb, capture, mutual
        )

    def _controlled(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        temb: torch.Tensor | None,
        capture: dict[int, list[int]] | None,
        mutual: MutualSelfAttention | None,
    ) -> torch.Tensor:
        # Mirrors diffusers' AttnProcessor2_0 so that the layer's output is the same as the
        # stock path's; capture reads the probabilities on the side, mutual attention swaps
        # the key/value rows before the product.
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key = attn.to_k(context)
        value = attn.to_v(context)

        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        if mutual is not None:
            rows = torch.arange(batch_size, device=key.device)
            for target, source in mutual.source_of.items():
                rows[target] = source
            key, value = key[rows], value[rows]

        if capture is not None:
            self._capture(query, key, attention_mask, capture, attn.scale)

        out = nnf.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0)
        out = out.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _capture(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        attention_mask: torch.Tensor | None,
        capture: dict[int, list[int]],
        scale: float,
    ) -> None:
        rows = list(capture)
        index = torch.tensor(rows, device=query.device)
        scores = (query[index].float() @ key[index].float().transpose(-1, -2)) * scale
        if attention_mask is not None:
            scores = scores + attention_mask[index].float()
        probs = scores.softmax(dim=-1)  # (rows, heads, queries, tokens)
        per_row = [probs[i, :, :, capture[row]].mean(dim=(0, 2)) for i, row in enumerate(rows)]
        maps = torch.stack(per_row)  # (rows, queries)
        h, w = self.controller.spatial_size(maps.shape[-1])
        self.controller._record(self.name, maps.view(len(rows), h, w))


@contextlib.contextmanager
def attention_control(unet: nn.Module, controller: AttentionController) -> Iterator[AttentionController]:
    """Install controlled processors on the UNet's transformer attention for the block's length."""
    layers = transformer_attention_layers(unet)
    originals = {name: module.processor for name, module in layers}
    self_index = 0
    try:
        for name, module in layers:
            index = None
            if name.endswith("attn1"):
                index = self_index
                self_index += 1
            module.set_processor(_ControlledAttnProcessor(controller, name, index, originals[name]))
        yield controller
    finally:
        for name, module in layers:
            module.set_processor(originals[name])


def count_self_attention_layers(unet: nn.Module) -> int:
    """How many self-attention layers MasaCtrl's start layer is counted over (16 in SD 1.5)."""
    return sum(1 for name, _ in transformer_attention_layers(unet) if name.endswith("attn1"))


def token_positions(tokenizer: Any, prompt: str, token: str) -> list[int]:
    """Positions of `token`'s ids in the encoded prompt (BOS at 0), for capture.

    A trained identifier is one added token, but a token string the tokenizer splits
    into several pieces is found as its run of ids. Raises if the prompt lacks it.
    """
    prompt_ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    token_ids = tokenizer(token, add_special_tokens=False).input_ids
    span = len(token_ids)
    for start in range(len(prompt_ids) - span + 1):
        if prompt_ids[start : start + span] == token_ids:
            return list(range(start, start + span))
    raise ValueError(f"the prompt {prompt!r} does not contain the token {token!r}")
