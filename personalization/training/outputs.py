"""The trained folder: LoRA weights and token embeddings (diffusers and kohya/A1111), and the manifest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import torch
from peft.utils import get_peft_model_state_dict

from personalization import artifacts
from personalization.dataset import PreparedDataset
from personalization.models import ModelKind, base_model_revision
from personalization.training.config import TrainConfig


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return "cpu"


def write_outputs(
    config: TrainConfig,
    *,
    kind: ModelKind,
    unet: Any,
    text_encoders: list[Any],
    tokens: dict[str, str],
    first_new: list[int],
    source: PreparedDataset,
    style: PreparedDataset | None,
    resolution: int,
    steps: int,
    wall_time: float,
    final_losses: dict[str, float],
    validation: dict[str, dict[str, float]],
    notices: list[str],
    device: torch.device,
) -> artifacts.TrainedManifest:
    """Writes the folder from the finished modules (token rows already merged into the embeddings)."""
    config.out.mkdir(parents=True, exist_ok=True)
    embeddings = {}
    for offset, (role, token) in enumerate(tokens.items()):
        vectors = [
            encoder.get_input_embeddings().weight[start + offset]
            for encoder, start in zip(text_encoders, first_new, strict=True)
        ]
        embeddings[role] = (token, vectors)
    text_lora = {}
    if config.method == "multiconcept":
        names = ["text_encoder", "text_encoder_2"]
        for name, encoder in zip(names, text_encoders, strict=False):
            text_lora[name] = get_peft_model_state_dict(encoder, save_embedding_layers=False)
    files = artifacts.write_artifacts(
        config.out,
        kind=kind,
        unet_lora=get_peft_model_state_dict(unet),
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
        model_kind=kind,
        method=config.method,
        tokens=dict(tokens),
        class_word=source.class_word,
        resolution=resolution,
        hyperparameters=config.hyperparameters(),
        dataset_hash=source.hash(),
        style_dataset_hash=style.hash() if style is not None else None,
        final_losses=final_losses,
        validation_losses=validation,
        wall_time_s=round(wall_time, 3),
        device=device_name(device),
        default_scales={"unet": 0.6, "text": 0.9}
        if config.method == "multiconcept"
        else {"unet": 1.0, "text": 1.0},
        files=files,
        steps=steps,
        notices=list(notices),
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
