"""One attention processor for everything that needs a hand inside the UNet's attention layers.

Three users, one design:
- training (MagiCapture's attention refocusing) needs the softmaxed text-to-image attention of
  the identifier tokens at the "16x16" level *with gradients*, on every training step;
- editing (LIPE's identity-aware mask) needs the identifier token's cross-attention maps,
  detached and averaged over the sampling steps;
- editing with MasaCtrl needs the edit's self-attention queries to read the source's keys and
  values.

An `AttentionController` holds what is switched on (`record`: layers whose full maps are kept
with gradients; `capture`: rows and token positions recorded detached; `mutual`: mutual
self-attention). `install` swaps one `_ControlledAttnProcessor` into every transformer attention
layer; `remove` (or leaving `attention_control`'s `with` block) puts the original processors
back. Nothing is installed permanently, so ordinary inference never runs this code; and while
installed, a layer with nothing switched on for it calls its original (fused) processor.
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

# A quarter of the latent side: the 16x16 maps of SD 1.5 at 512 px, 32x32 of SDXL at 1024 px,
# 8x8 of the tiny model at 64 px.
REFOCUS_LEVEL = 2


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
    """What the installed processors do, and what they recorded.

    `record`: names of cross-attention layers (module names, e.g. "down_blocks.2.attentions.0.
    transformer_blocks.0.attn2") whose per-head probabilities (batch, heads, pixels, tokens) are
    kept in `recorded` with their autograd graph, overwritten by every forward: the training path.
    `capture`: batch row -> prompt token positions whose cross-attention probabilities are
    recorded detached, in every cross-attention layer, and summed over the forwards they were
    captured in; `maps()` gives the means with shape (rows, h, w): the editing path.
    `mutual`: MasaCtrl's mutual self-attention, compared with `step`, which the sampling loop
    sets before each UNet call.
    `latent_size` is the (h, w) of the UNet's input, from which each layer's map shape follows.
    """

    latent_size: tuple[int, int]
    record: tuple[str, ...] = ()
    capture: dict[int, list[int]] | None = None
    mutual: MutualSelfAttention | None = None
    step: int = 0
    recorded: dict[str, torch.Tensor] = field(default_factory=dict)
    _sums: dict[str, torch.Tensor] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)
    _installed: tuple[nn.Module, dict[str, Any]] | None = field(default=None, repr=False)

    # ---- installation ------------------------------------------------------------------------

    @property
    def installed(self) -> bool:
        return self._installed is not None

    def install(self, unet: nn.Module) -> None:
        """Swap the controlled processor into every transformer attention layer (idempotent)."""
        if self._installed is not None:
            if self._installed[0] is not unet:
                raise RuntimeError("the controller is installed on another UNet")
            return
        layers = transformer_attention_layers(unet)
        known = {name for name, _ in layers}
        unknown = [name for name in self.record if name not in known or not name.endswith("attn2")]
        if unknown:
            raise ValueError(f"not cross-attention layers of this UNet: {', '.join(unknown)}")
        originals = {name: module.processor for name, module in layers}
        self_index = 0
        for name, module in layers:
            index = None
            if name.endswith("attn1"):
                index = self_index
                self_index += 1
            module.set_processor(_ControlledAttnProcessor(self, name, index, originals[name]))
        self._installed = (unet, originals)

    def remove(self) -> None:
        """Put the original processors back and drop the graph-carrying records."""
        if self._installed is None:
            return
        unet, originals = self._installed
        for name, module in transformer_attention_layers(unet):
            module.set_processor(originals[name])
        self._installed = None
        self.recorded.clear()

    # ---- detached capture (editing) ------------------------------------------------------------

    def reset_maps(self) -> None:
        self._sums.clear()
        self._counts.clear()

    def maps(self) -> dict[str, torch.Tensor]:
        """Mean captured map per layer, float32, shape (len(capture rows), h, w)."""
        return {name: total / self._counts[name] for name, total in self._sums.items()}

    def _accumulate(self, name: str, maps: torch.Tensor) -> None:
        if name in self._sums:
            self._sums[name] += maps
            self._counts[name] += 1
        else:
            self._sums[name] = maps.clone()
            self._counts[name] = 1

    # ---- recorded maps with gradients (training) -----------------------------------------------

    def token_maps(self, positions: torch.Tensor) -> torch.Tensor:
        """Every recorded layer's and head's map of each sample's chosen token positions.

        Kept apart, not averaged: MagiCapture's refocusing loss scales each head's map on its own
        before averaging (official lora_diffusion_/magicapture_train.py, `get_attentions`, the 40
        maps of SD 1.5's 16x16 layers). positions: (batch, K) long, the index of token k in
        sample b's prompt. Returns (batch, K, layers x heads, h, w), differentiable.
        """
        missing = [name for name in self.record if name not in self.recorded]
        if not self.record or missing:
            raise RuntimeError("no cross-attention recorded: run the UNet with the controller installed")
        # The K token columns of each layer first, so no copy of every head's full map is made.
        columns = []
        for name in self.record:
            probs = self.recorded[name]  # (B, heads, pixels, tokens)
            index = positions[:, None, None, :].expand(-1, probs.shape[1], probs.shape[2], -1)
            columns.append(torch.gather(probs, 3, index))
        chosen = torch.cat(columns, dim=1)  # (B, M, pixels, K)
        batch, maps, pixels, tokens = chosen.shape
        height, width = self.spatial_size(pixels)
        return chosen.permute(0, 3, 1, 2).reshape(batch, tokens, maps, height, width)

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


@contextlib.contextmanager
def attention_control(unet: nn.Module, controller: AttentionController) -> Iterator[AttentionController]:
    """The controller installed on the UNet for the length of a `with` block."""
    controller.install(unet)
    try:
        yield controller
    finally:
        controller.remove()


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


def cross_attention_layers(unet: Any, level: int = REFOCUS_LEVEL) -> tuple[str, ...]:
    """Names of the cross-attention layers of the down and up blocks working at latent / 2**level.

    down_blocks[i] works at latent / 2**i; up_blocks[j] at latent / 2**(n - 1 - j). The mid block
    is left out, as in MagiCapture's code.
    """
    up_count = len(unet.up_blocks)
    prefixes = (f"down_blocks.{level}.", f"up_blocks.{up_count - 1 - level}.")
    names = tuple(
        name
        for name, _ in transformer_attention_layers(unet)
        if name.endswith("attn2") and name.startswith(prefixes)
    )
    if not names:
        raise ValueError(f"the UNet has no cross-attention at level {level} (latent / {2**level})")
    return names


def count_self_attention_layers(unet: nn.Module) -> int:
    """How many self-attention layers MasaCtrl's start layer is counted over (16 in SD 1.5)."""
    return sum(1 for name, _ in transformer_attention_layers(unet) if name.endswith("attn1"))


def _probabilities(
    attn: Any, query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """softmax(q kᵀ · scale + mask) of (batch, heads, queries, dim) tensors, upcast as the layer asks."""
    dtype = query.dtype
    if attn.upcast_attention:
        query, key = query.float(), key.float()
    scores = (query @ key.transpose(-1, -2)) * attn.scale
    if attention_mask is not None:
        scores = scores + attention_mask
    if attn.upcast_softmax:
        scores = scores.float()
    return scores.softmax(dim=-1).to(dtype)


class _ControlledAttnProcessor:
    """Replaces one layer's processor while a controller is installed."""

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
        keep = is_cross and self.name in control.record
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
        if not keep and capture is None and mutual is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        return self._controlled(
            attn, hidden_states, encoder_hidden_states, attention_mask, temb, keep, capture, mutual
        )

    def _controlled(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        temb: torch.Tensor | None,
        keep: bool,
        capture: dict[int, list[int]] | None,
        mutual: MutualSelfAttention | None,
    ) -> torch.Tensor:
        # Mirrors diffusers' AttnProcessor2_0 so that the layer's output is the stock path's.
        # Mutual attention swaps the key/value rows before the product. Detached capture reads the
        # probabilities on the side and keeps the fused SDPA; a recorded (graph-carrying) layer
        # computes the probabilities explicitly and uses them for the output, so the refocusing
        # loss's gradient reaches the layer's query and key projections.
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

        probs = _probabilities(attn, query, key, attention_mask) if keep else None
        if probs is not None:
            self.controller.recorded[self.name] = probs  # (batch, heads, pixels, tokens)
        if capture is not None:
            self._capture(attn, query, key, attention_mask, capture, probs)

        if probs is not None:
            out = probs @ value
        else:
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
        attn: Any,
        query: torch.Tensor,
        key: torch.Tensor,
        attention_mask: torch.Tensor | None,
        capture: dict[int, list[int]],
        probs: torch.Tensor | None,
    ) -> None:
        rows = list(capture)
        index = torch.tensor(rows, device=query.device)
        with torch.no_grad():
            if probs is None:
                mask = None if attention_mask is None else attention_mask[index].float()
                chosen = _probabilities(attn, query[index].float(), key[index].float(), mask)
            else:
                chosen = probs[index].float()  # (rows, heads, queries, tokens)
            per_row = [chosen[i, :, :, capture[row]].mean(dim=(0, 2)) for i, row in enumerate(rows)]
            maps = torch.stack(per_row)  # (rows, queries)
        h, w = self.controller.spatial_size(maps.shape[-1])
        self.controller._accumulate(self.name, maps.view(len(rows), h, w))


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
