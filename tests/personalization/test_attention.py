"""The one attention processor serving training (maps with gradients) and editing (detached capture).

Editing's own uses (per-layer capture shapes, the identity mask, mutual self-attention) are in
test_edit.py; refocusing's gradient reaching the LoRA is in test_training_losses.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from personalization.attention import AttentionController, attention_control, cross_attention_layers
from personalization.models import load_pipeline


@pytest.fixture(scope="module")
def unet_inputs(tiny_sd: Path) -> tuple[Any, torch.Tensor, torch.Tensor]:
    pipe = load_pipeline(tiny_sd, device="cpu")
    ids = pipe.tokenizer(
        ["a photo of a person"] * 2, padding="max_length", max_length=77, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        embeds = pipe.text_encoder(ids)[0]
    latents = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    return pipe.unet, latents, embeds


def _processors(unet: Any) -> dict[str, Any]:
    return {name: module.processor for name, module in unet.named_modules() if hasattr(module, "processor")}


def test_recording_and_capture_share_one_processor_and_leave_no_trace(
    unet_inputs: tuple[Any, torch.Tensor, torch.Tensor],
) -> None:
    unet, latents, embeds = unet_inputs
    before = _processors(unet)
    layers = cross_attention_layers(unet)
    controller = AttentionController(latent_size=(32, 32))
    with torch.no_grad():
        plain = unet(latents, 400, embeds).sample
    with attention_control(unet, controller):
        with torch.no_grad():
            idle = unet(latents, 400, embeds).sample
        controller.record = layers
        controller.capture = {1: [4]}
        embeds_grad = embeds.clone().requires_grad_(True)
        both = unet(latents, 400, embeds_grad).sample
        recorded = controller.token_maps(torch.tensor([[4], [4]]))
        captured = controller.maps()
    # Nothing switched on: the stock processors ran, bit for bit.
    assert torch.equal(plain, idle)
    # Recording computes the softmax explicitly and capture reads it: the output does not change.
    assert torch.allclose(plain, both.detach(), atol=1e-5)
    # The recorded maps carry the graph back to the text embeddings; the captured ones do not.
    # One map per recorded layer and head: refocusing scales each head's map on its own.
    heads = sum(unet.get_submodule(name).heads for name in layers)
    assert recorded.requires_grad and recorded.shape == (2, 1, heads, 8, 8)
    (gradient,) = torch.autograd.grad(recorded.sum(), embeds_grad)
    assert gradient.abs().sum() > 0
    assert all(not value.requires_grad for value in captured.values())
    # Every cross-attention layer was captured; on the recorded layers both paths read the same maps.
    assert len(captured) == sum(1 for name in before if name.endswith("attn2"))
    mean_captured = torch.stack([captured[name][0] for name in layers]).mean(dim=0)
    assert torch.allclose(mean_captured, recorded[1, 0].detach().mean(dim=0), atol=1e-6)
    # Leaving the block puts every original processor back and drops the graph-carrying maps.
    after = _processors(unet)
    assert all(after[name] is before[name] for name in before)
    assert not controller.installed and not controller.recorded


def test_recording_a_layer_that_is_not_cross_attention_is_refused_before_anything_is_installed(
    unet_inputs: tuple[Any, torch.Tensor, torch.Tensor],
) -> None:
    unet, _, _ = unet_inputs
    before = _processors(unet)
    wrong = AttentionController(
        latent_size=(32, 32), record=("down_blocks.1.attentions.0.transformer_blocks.0.attn1",)
    )
    with pytest.raises(ValueError, match="not cross-attention layers"):
        wrong.install(unet)
    assert not wrong.installed
    assert all(_processors(unet)[name] is before[name] for name in before)
    with pytest.raises(RuntimeError, match="no cross-attention recorded"):
        AttentionController(latent_size=(32, 32), record=cross_attention_layers(unet)).token_maps(
            torch.tensor([[4]])
        )
