"""Attention control: cross-attention capture, recording with gradients, mutual self-attention.

Three users need a hand inside the UNet's attention layers. LIPE's identity-aware edit
mask comes from the (detached) cross-attention maps of the subject's identifier token;
MagiCapture's attention refocusing loss needs the head-averaged cross-attention
probabilities of chosen layers *with* their gradients; MasaCtrl keeps a subject's
appearance while its pose changes by letting the edit's self-attention queries read the
source's keys and values. One processor serves all three, and nothing here is installed
permanently: `attention_control` (or `CrossAttentionRecorder` for a training phase) swaps
it into the UNet's transformer attention layers and puts the original processors back
afterwards. Ordinary generation never sees it and pays nothing; while it is installed, a
layer with nothing to capture, record or share calls the original processor.
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
    `record` names cross-attention layers whose head-averaged probabilities are kept,
    gradients and all, in `recorded[name]` as (batch, pixels, tokens) after each forward.
    """

    latent_size: tuple[int, int] | None = None
    capture: dict[int, list[int]] | None = None
    mutual: MutualSelfAttention | None = None
    step: int = 0
    record: frozenset[str] = frozenset()
    recorded: dict[str, torch.Tensor] = field(default_factory=dict)
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
        if self.latent_size is None:
            raise ValueError("capturing maps needs the latent size of the run")
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
        record = is_cross and self.name in control.record
        mutual = None
        if (
            not is_cross
            and control.mutual is not None
            and self.self_index is not None
            and control.step >= control.mutual.start_step
            and self.self_index >= control.mutual.start_layer
        ):
            mutual = control.mutual
        if capture is None and mutual is None and not record:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        return self._controlled(
            attn, hidden_states, encoder_hidden_states, attention_mask, temb, capture, mutual, record
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
        record: bool,
    ) -> torch.Tensor:
        # Mirrors diffusers' AttnProcessor2_0 so that the layer's output is the same as the
        # stock path's; capture and record read the probabilities on the side (the same
        # softmax, so gradients of a loss on them reach to_q/to_k exactly as through the
        # output), mutual attention swaps the key/value rows before the product.
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

        if capture is not None or record:
            scores = (query.float() @ key.float().transpose(-1, -2)) * attn.scale
            if attention_mask is not None:
                scores = scores + attention_mask.float()
            probs = scores.softmax(dim=-1)  # (batch, heads, queries, tokens)
            if record:
                self.controller.recorded[self.name] = probs.mean(dim=1).to(query.dtype)
            if capture is not None:
                self._capture(probs.detach(), capture)

        out = nnf.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0)
        out = out.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _capture(self, probs: torch.Tensor, capture: dict[int, list[int]]) -> None:
        rows = list(capture)
        per_row = [probs[row, :, :, capture[row]].mean(dim=(0, 2)) for row in rows]
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


# A quarter of the latent side: the 16x16 maps of SD 1.5 at 512 px, 32x32 of SDXL at 1024 px,
# 8x8 of the tiny model at 64 px.
REFOCUS_LEVEL = 2


def cross_attention_layers(unet: nn.Module, level: int = REFOCUS_LEVEL) -> list[str]:
    """The cross-attention layers of the down and up blocks working at latent / 2**level.

    down_blocks[i] works at latent / 2**i; up_blocks[j] at latent / 2**(n - 1 - j). The mid
    block is left out, as in MagiCapture's code.
    """
    up_count = len(unet.up_blocks)  # type: ignore[arg-type]
    prefixes = (f"down_blocks.{level}.", f"up_blocks.{up_count - 1 - level}.")
    names = [
        name
        for name, _ in transformer_attention_layers(unet)
        if name.endswith("attn2") and name.startswith(prefixes)
    ]
    if not names:
        raise ValueError(f"the UNet has no cross-attention at level {level} (latent / {2**level})")
    return names


class CrossAttentionRecorder:
    """Records `layers`' cross-attention with gradients, for a training phase.

    `maps[name]` is (batch, pixels, tokens) after a forward. Use as a context manager, or
    install()/remove() around a training phase; removed, the UNet has its own processors back.
    """

    def __init__(self, unet: nn.Module, layers: list[str] | None = None) -> None:
        self.unet = unet
        self.layers = layers if layers is not None else cross_attention_layers(unet)
        self.controller = AttentionController(record=frozenset(self.layers))
        self._control: contextlib.ExitStack | None = None

    @property
    def maps(self) -> dict[str, torch.Tensor]:
        return self.controller.recorded

    @property
    def installed(self) -> bool:
        return self._control is not None

    def install(self) -> None:
        if self._control is None:
            stack = contextlib.ExitStack()
            stack.enter_context(attention_control(self.unet, self.controller))
            self._control = stack

    def remove(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        self.maps.clear()

    def __enter__(self) -> CrossAttentionRecorder:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
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
