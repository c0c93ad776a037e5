"""The losses on their own: masked reconstruction, attention refocusing, token rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig
from torch import nn
from torch.nn import functional

from personalization.attention import AttentionController, attention_control, cross_attention_layers
from personalization.losses import attention_refocus_loss, masked_mse, min_max_scale
from personalization.models import load_pipeline
from personalization.training import TrainableTokenRows, TrainConfig
from personalization.training.schedule import clips_gradients, parameter_groups, pull_embedding_norms


def test_masked_loss_gradient_is_zero_outside_the_mask() -> None:
    generator = torch.Generator().manual_seed(0)
    prediction = torch.randn(2, 4, 8, 8, generator=generator, requires_grad=True)
    target = torch.randn(2, 4, 8, 8, generator=generator)
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, 2:6, 1:5] = 1.0
    mask[1, :, 5:, :] = 1.0
    masked_mse(prediction, target, mask).sum().backward()
    assert prediction.grad is not None
    outside = (mask == 0).expand_as(prediction)
    assert torch.count_nonzero(prediction.grad[outside]) == 0
    assert torch.count_nonzero(prediction.grad[~outside]) == int((~outside).sum())


def test_masked_loss_rescales_by_mask_area() -> None:
    prediction = torch.ones(1, 4, 8, 8)
    target = torch.zeros(1, 4, 8, 8)
    full = torch.ones(1, 1, 8, 8)
    quarter = torch.zeros(1, 1, 8, 8)
    quarter[..., :4, :4] = 1.0
    # An error of 1 everywhere is a loss of 1 whatever the supervised area.
    assert masked_mse(prediction, target, full).item() == pytest.approx(1.0)
    assert masked_mse(prediction, target, quarter).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="does not match"):
        masked_mse(prediction, target, torch.ones(1, 1, 4, 4))


def _region(size: int, top: int, left: int, extent: int) -> torch.Tensor:
    mask = torch.zeros(size, size)
    mask[top : top + extent, left : left + extent] = 1.0
    return mask


def test_refocusing_is_zero_inside_and_positive_when_attention_leaks() -> None:
    maps = torch.zeros(1, 2, 1, 8, 8)  # (samples, tokens, maps, h, w)
    maps[0, 0, 0, 3:5, 3:5] = torch.tensor([[0.2, 0.5], [0.7, 0.9]])  # identity token: the face
    maps[0, 1, 0, 0, 0:8] = 0.4  # style token: the top row, away from the face
    masks = torch.stack([_region(32, 8, 8, 16), 1.0 - _region(32, 8, 8, 16)])[None]
    assert attention_refocus_loss(maps, masks).item() == 0.0

    leaking = maps.clone()
    leaking[0, 0, 0, 7, 7] = 0.6  # identity attention in a corner, outside the face
    loss = attention_refocus_loss(leaking, masks)
    assert loss.item() > 0.001
    leaking[0, 0, 0, 6:8, 6:8] = 0.6  # a wider leak costs more
    assert attention_refocus_loss(leaking, masks).item() > 2 * loss.item()
    valid = torch.tensor([[False, True]])
    assert attention_refocus_loss(leaking, masks, valid).item() == 0.0


def test_refocusing_scales_each_head_on_its_own() -> None:
    """As the official code: every head's map is min-max scaled before the maps are averaged, so a
    head with little attention mass that looks at the wrong place costs as much as a strong one."""
    maps = torch.zeros(1, 1, 2, 8, 8)
    maps[0, 0, 0, 3:5, 3:5] = 0.9  # a strong head on the face
    maps[0, 0, 1, 0:2, 0:2] = 0.001  # a weak head in the corner, outside the face
    masks = _region(32, 8, 8, 16)[None, None]
    loss = attention_refocus_loss(maps, masks)
    louder = maps.clone()
    louder[0, 0, 1] *= 100
    assert loss.item() > 0.001
    assert attention_refocus_loss(louder, masks).item() == pytest.approx(loss.item(), rel=1e-4)


def test_a_composed_sample_is_not_weighted_twice() -> None:
    """A composed sample has both tokens; their terms are averaged (the official `.mean()`), so it
    weighs as much as a sample with one token."""
    token = torch.zeros(8, 8)
    token[3:5, 3:5] = 0.9
    token[7, 7] = 0.6  # a leak outside the face
    maps = token.expand(1, 2, 1, 8, 8)  # the same map for both tokens
    masks = torch.stack([_region(32, 8, 8, 16)] * 2)[None]
    both = attention_refocus_loss(maps, masks, torch.tensor([[True, True]]))
    one = attention_refocus_loss(maps, masks, torch.tensor([[True, False]]))
    assert one.item() > 0.001 and both.item() == pytest.approx(one.item())


def test_min_max_scaling_maps_each_map_to_unit_range() -> None:
    maps = torch.tensor([[[[0.1, 0.3], [0.2, 0.5]], [[2.0, 2.0], [4.0, 3.0]]]])
    scaled = min_max_scale(maps)
    assert torch.allclose(scaled.amin(dim=(-2, -1)), torch.zeros(1, 2))
    assert torch.allclose(scaled.amax(dim=(-2, -1)), torch.ones(1, 2), atol=1e-6)


def test_refocusing_gradient_reaches_the_lora_parameters(tiny_sd: Path) -> None:
    pipe = load_pipeline(tiny_sd, device="cpu")
    unet = pipe.unet
    unet.requires_grad_(False)
    torch.manual_seed(0)
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_q", "to_k"])
    )
    for name, parameter in unet.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(parameter, std=0.1)  # a LoRA that has already trained a little
    layers = cross_attention_layers(unet)
    assert layers == (
        "down_blocks.2.attentions.0.transformer_blocks.0.attn2",
        "up_blocks.0.attentions.0.transformer_blocks.0.attn2",
        "up_blocks.0.attentions.1.transformer_blocks.0.attn2",
    )
    ids = pipe.tokenizer(
        ["a photo of a person"], padding="max_length", max_length=77, return_tensors="pt"
    ).input_ids
    embeds = pipe.text_encoder(ids)[0]
    latents = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with attention_control(unet, AttentionController(latent_size=(32, 32), record=layers)) as recorder:
        unet(latents, torch.tensor([500]), embeds)
        maps = recorder.token_maps(torch.tensor([[4, 12]]))
        assert maps.shape[:2] == (1, 2) and maps.shape[-2:] == (8, 8)  # the tiny model's "16x16" level
        masks = torch.stack([_region(32, 8, 8, 16), 1.0 - _region(32, 8, 8, 16)])[None]
        loss = attention_refocus_loss(maps, masks)
        loss.backward()
    assert loss.item() > 0
    grads = {
        name: parameter.grad
        for name, parameter in unet.named_parameters()
        if "lora_" in name and any(name.startswith(layer) for layer in layers)
    }
    assert grads and all(grad is not None and grad.abs().sum() > 0 for grad in grads.values())
    # Leaving the recorder restores the fused processors: inference pays nothing.
    assert all(type(processor).__name__ == "AttnProcessor2_0" for processor in unet.attn_processors.values())


def test_token_rows_train_only_the_new_rows() -> None:
    base = nn.Embedding(10, 4)
    base.requires_grad_(False)
    original = base.weight.detach().clone()
    rows = TrainableTokenRows(base, first_new=8)
    out = rows(torch.tensor([[1, 8, 9, 3]]))
    assert torch.equal(out[0, 0], original[1]) and torch.equal(out[0, 1], original[8])
    out.sum().backward()
    assert rows.rows.grad is not None and torch.count_nonzero(rows.rows.grad) == 8
    with torch.no_grad():
        rows.rows.add_(1.0)
    merged = rows.merged()
    assert torch.equal(merged.weight[:8], original[:8])
    assert torch.equal(merged.weight[8:], original[8:] + 1.0)


def test_clip_ti_decay_pulls_the_new_rows_towards_norm_0_4() -> None:
    """The official phase-1 control: norm n becomes n + min(1, 100 lr) (0.4 - n), direction kept."""
    rows = torch.stack([torch.tensor([3.0, 4.0]) / 5, torch.tensor([0.0, 0.1])])  # norms 1.0 and 0.1
    before = rows.clone()
    pull_embedding_norms(rows, 2e-3, 0.4)  # the official phase-1 rate: 20% of the way
    assert rows.norm(dim=-1).tolist() == pytest.approx([0.88, 0.16])
    assert torch.allclose(functional.normalize(rows, dim=-1), functional.normalize(before, dim=-1))
    pull_embedding_norms(rows, 0.02, 0.4)  # a rate of 1/100 or more: all the way
    assert rows.norm(dim=-1).tolist() == pytest.approx([0.4, 0.4])


def test_phase_groups_follow_the_official_optimizers() -> None:
    """Phase 1: the embeddings alone, no weight decay; phase 2: weight decay 1e-3 on every group,
    the embeddings at their own phase-2 rate; the method's rates unless set."""
    unet, text, rows = ([nn.Parameter(torch.zeros(1))] for _ in range(3))
    unused = Path("unused")
    config = TrainConfig(method="multiconcept", base_model="unused", images=unused, out=unused)
    phase1 = parameter_groups("embeddings", config, unet, text, rows)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in phase1] == [("embeddings", 2e-3, 0.0)]
    phase2 = parameter_groups("joint", config, unet, text, rows)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in phase2] == [
        ("unet_lora", 4e-4, 1e-3),
        ("text_lora", 4e-5, 1e-3),
        ("embeddings", 1e-4, 1e-3),
    ]
    assert clips_gradients("joint") and clips_gradients("identity") and not clips_gradients("embeddings")
