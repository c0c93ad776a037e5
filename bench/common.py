"""What both benchmarks share: the random-weight models at the real sizes, and where data lives.

Speed does not depend on the weights, so "real" models are the SD 1.5 and SDXL architectures
with random weights, built once and saved as ordinary model folders: they then load through
`personalization.models.load_pipeline` like downloaded weights would. The device machines
cannot reach a model hub, and the shared data folder beside a checkout does not travel there,
so every path here can be overridden from the command line.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORK = REPO_ROOT / "var" / "bench"
DEFAULT_FACES = REPO_ROOT.parent / "shared" / "data" / "faces"


def real_pipeline(kind: str, device: str = "cpu") -> Any:
    """Random weights, real architectures: SD 1.5 (runwayml v1-5 configs) and SDXL base 1.0.

    The weights are initialised on `device`: on "cuda" SDXL's 3.5 B random parameters take
    seconds instead of a minute of CPU time. Only the modules are built there; the schedulers
    turn tensors into numpy arrays as they are built, so they are built outside it.
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from personalization.tiny import END_OF_TEXT, START_OF_TEXT, assemble_pipeline, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()  # vocabulary size does not change the speed of a step
    ids = {"bos_token_id": tokenizer.convert_tokens_to_ids(START_OF_TEXT)}
    ids["eos_token_id"] = ids["pad_token_id"] = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    clip_l = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=768,
        **ids,
    )
    vae_config: dict[str, Any] = {
        "block_out_channels": (128, 256, 512, 512),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 2,
        "latent_channels": 4,
    }
    torch.manual_seed(0)
    if kind == "sd15":
        with torch.device(device):
            unet = UNet2DConditionModel(
                sample_size=64,
                block_out_channels=(320, 640, 1280, 1280),
                layers_per_block=2,
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                cross_attention_dim=768,
                attention_head_dim=8,
            )
            vae = AutoencoderKL(sample_size=512, scaling_factor=0.18215, **vae_config)
            text_encoder = CLIPTextModel(clip_l)
        return assemble_pipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer)
    clip_g = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=32,
        num_attention_heads=20,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=1280,
        **ids,
    )
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=128,
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        )
        vae = AutoencoderKL(sample_size=1024, scaling_factor=0.13025, force_upcast=True, **vae_config)
        text_encoder, text_encoder_2 = CLIPTextModel(clip_l), CLIPTextModelWithProjection(clip_g)
    return assemble_pipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=build_tiny_tokenizer(),
    )


def ensure_model(size: str, kind: str, work: Path) -> Path:
    """The model folder for ("tiny" | "real", "sd15" | "sdxl"), built on first use."""
    import torch

    from personalization.tiny import build_tiny_model

    folder = work / "models" / f"{size}-{kind}"
    if (folder / "model_index.json").is_file():
        return folder
    if size == "tiny":
        return build_tiny_model(folder, xl=kind == "sdxl")
    pipe = real_pipeline(kind, "cuda" if torch.cuda.is_available() else "cpu")
    pipe.to(torch.bfloat16)  # half the disk; loading casts to the run's dtype
    pipe.save_pretrained(folder)
    return folder


def ensure_data(faces: Path, resolution: int, work: Path) -> tuple[Path, Path]:
    """Prepared identity (obama*) and style (biden*) folders at this resolution, built on first use.

    Preparing needs dlib and its face models; the device machines have neither, so the
    folders are prepared here and carried there (bench/device_prepare.sh).
    """
    folders = []
    for style, pattern in ((False, "obama*.jpg"), (True, "biden*.jpg")):
        out = work / "data" / f"{'style' if style else 'source'}-{resolution}"
        if not (out / "manifest.json").is_file():
            from personalization.prepare import PrepareOptions, prepare  # needs dlib: only here

            photos = Path(tempfile.mkdtemp())
            for photo in sorted(faces.glob(pattern)):
                shutil.copy(photo, photos / photo.name)
            prepare(photos, out, PrepareOptions(resolution=resolution, style=style, force=True))
        folders.append(out)
    return folders[0], folders[1]
