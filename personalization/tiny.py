"""A tiny, randomly initialised Stable Diffusion (SD 1.5 or SDXL layout) for tests, CI and offline demos.

Written through save_pretrained so that `models.load_pipeline` loads it exactly like real
weights. Its images are noise-like; its value is that every code path (LoRA, new tokens,
cross-attention capture, losses, saving, loading) runs on the real diffusers classes.

Layout and the "16x16" maps: the VAE halves the image (two blocks), so a 64 px image
has a 32x32 latent. The UNet has three levels, DownBlock2D -> CrossAttnDownBlock2D ->
CrossAttnDownBlock2D (the SDXL layout), at 32, 16 and 8 latent pixels. MagiCapture's
attention refocusing reads the cross-attention maps at a quarter of the latent side
(16x16 for SD 1.5 at 512 px, 32x32 for SDXL at 1024 px); on the tiny model at 64 px that
is the 8x8 level: down_blocks.2 and up_blocks.0.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

TEXT_HIDDEN_SIZE = 32
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte-to-printable-character table: every byte gets one visible symbol."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes), strict=True))


def tiny_vocab() -> dict[str, int]:
    """Every byte symbol alone and as a word end, then the two special tokens.

    With no merges, any text tokenizes into single characters, so every prompt (including
    ones with identifier tokens added later through tokenizer.add_tokens) is representable.
    """
    symbols = sorted(_bytes_to_unicode().values())
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    for symbol in symbols:
        vocab[symbol + "</w>"] = len(vocab)
    vocab[START_OF_TEXT] = len(vocab)
    vocab[END_OF_TEXT] = len(vocab)
    return vocab


def build_tiny_tokenizer() -> CLIPTokenizer:
    """A CLIPTokenizer from a generated vocabulary and an empty merges file."""
    with tempfile.TemporaryDirectory() as folder:
        vocab_path = Path(folder) / "vocab.json"
        merges_path = Path(folder) / "merges.txt"
        vocab_path.write_text(json.dumps(tiny_vocab()))
        merges_path.write_text("#version: 0.2\n")
        return CLIPTokenizer(vocab=str(vocab_path), merges=str(merges_path), model_max_length=77)


def _text_config(vocab_size: int, bos_id: int, eos_id: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN_SIZE,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=TEXT_HIDDEN_SIZE,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        hidden_act="gelu",
    )


def _unet(*, xl: bool) -> UNet2DConditionModel:
    extra: dict[str, object] = {}
    if xl:
        # SDXL conditions on the pooled text embedding plus six size/crop numbers.
        extra = {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 6 * 8 + TEXT_HIDDEN_SIZE,
            "use_linear_projection": True,
        }
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * TEXT_HIDDEN_SIZE if xl else TEXT_HIDDEN_SIZE,
        attention_head_dim=8,
        **extra,
    )


def _vae(*, xl: bool) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=64,
    )


# Public-domain photos shipped by scikit-image: the calibration set for the latent scale.
_CALIBRATION_IMAGES = ("astronaut", "coffee", "chelsea", "rocket")


@torch.no_grad()
def calibrated_scaling_factor(vae: AutoencoderKL, resolution: int = 64) -> float:
    """1 / std of the VAE's latents over real photos: how SD's 0.18215 was chosen for its VAE.

    The noise schedule assumes unit-variance latents. A random VAE's latents are far
    smaller than SD's (std about 0.17 instead of 5.5), so keeping SD's constant would put
    the tiny model's latents some thirty times under the noise, and DDIM inversion,
    training and sampling would all run on a scale no real model has.
    """
    from skimage import data

    batch = []
    for name in _CALIBRATION_IMAGES:
        photo = Image.fromarray(getattr(data, name)()).convert("RGB").resize((resolution, resolution))
        batch.append(torch.from_numpy(np.asarray(photo, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1))
    latents = vae.encode(torch.stack(batch)).latent_dist.mean
    return round(float(1.0 / latents.std()), 5)


def build_tiny_pipeline(
    *, xl: bool = False, seed: int = 0
) -> StableDiffusionPipeline | StableDiffusionXLPipeline:
    """Builds the tiny pipeline in memory; the same seed gives bit-identical weights."""
    tokenizer = build_tiny_tokenizer()
    vocab_size = len(tokenizer)
    bos_id = tokenizer.convert_tokens_to_ids(START_OF_TEXT)
    eos_id = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _unet(xl=xl)
        vae = _vae(xl=xl)
        vae.register_to_config(scaling_factor=calibrated_scaling_factor(vae))
        text_encoder = CLIPTextModel(_text_config(vocab_size, bos_id, eos_id))
        text_encoder_2 = CLIPTextModelWithProjection(_text_config(vocab_size, bos_id, eos_id)) if xl else None
    return assemble_pipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=build_tiny_tokenizer() if xl else None,
    )


def assemble_pipeline(
    *,
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    text_encoder_2: CLIPTextModelWithProjection | None = None,
    tokenizer_2: CLIPTokenizer | None = None,
) -> StableDiffusionPipeline | StableDiffusionXLPipeline:
    """A pipeline from components, with the noise schedule the real models ship (PNDM / Euler).

    Also used by bench/ to assemble random-weight models at the real SD 1.5 and SDXL sizes.
    """
    schedule = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1}
    if text_encoder_2 is not None:
        return StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2 or tokenizer,
            unet=unet,
            scheduler=EulerDiscreteScheduler(**schedule, timestep_spacing="leading"),
        )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler(**schedule, skip_prk_steps=True, set_alpha_to_one=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_model(out_dir: str | Path, *, xl: bool = False, seed: int = 0) -> Path:
    """Writes the tiny model folder (diffusers layout) and returns its path."""
    target = Path(out_dir)
    build_tiny_pipeline(xl=xl, seed=seed).save_pretrained(target)
    return target
