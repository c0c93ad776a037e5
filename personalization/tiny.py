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

Latent scale: SD's VAE scaling factor (0.18215) is 1 / std of *its* VAE's latents, chosen so
that the diffusion model sees unit-variance latents. A random VAE has its own spread, so the
builder measures the factor the same way on skimage's bundled sample photos and saves it in
the VAE config: training, generation, editing and the benchmarks all get unit-variance latents
from `vae.config.scaling_factor` with no special case.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

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
from skimage import data as sample_data
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from personalization.dataset import image_tensor

TEXT_HIDDEN_SIZE = 32
# skimage's bundled photos (no download): portraits, an animal, objects, a scene, text-like coins.
CALIBRATION_IMAGES = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins")
# The tiny VAE's posterior standard deviation, in unscaled latent units (its means spread ~0.18).
POSTERIOR_STD = 0.01
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


def _narrow_posterior(vae: AutoencoderKL) -> None:
    """Gives the random VAE a trained VAE's narrow posterior.

    Random weights put the log-variance near 0, i.e. posterior noise of std ~1 on latents whose
    means spread ~0.18: training (which samples the posterior) would learn noise, and no single
    scaling factor could give both sampled and mean latents unit variance. The log-variance half
    of quant_conv is set to a constant so the posterior std is POSTERIOR_STD everywhere.
    """
    channels = int(vae.config.latent_channels)
    with torch.no_grad():
        vae.quant_conv.weight[channels:].zero_()
        vae.quant_conv.bias[channels:].fill_(2 * math.log(POSTERIOR_STD))


def calibration_batch(size: int) -> torch.Tensor:
    """CALIBRATION_IMAGES as RGB, resized to size x size, in [-1, 1]: (N, 3, size, size)."""
    pictures = [Image.fromarray(getattr(sample_data, name)()) for name in CALIBRATION_IMAGES]
    return torch.stack(
        [image_tensor(picture.resize((size, size), Image.Resampling.LANCZOS)) for picture in pictures]
    )


def latent_scaling_factor(vae: AutoencoderKL) -> float:
    """1 / std of the VAE's latents over the calibration photos, as SD's 0.18215 was measured.

    The posterior means are used (deterministic); with the narrow posterior they are the samples
    up to POSTERIOR_STD.
    """
    with torch.no_grad():
        latents = vae.encode(calibration_batch(int(vae.config.sample_size))).latent_dist.mean
    return float(1.0 / latents.float().std())


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
        _narrow_posterior(vae)
        text_encoder = CLIPTextModel(_text_config(vocab_size, bos_id, eos_id))
        text_encoder_2 = CLIPTextModelWithProjection(_text_config(vocab_size, bos_id, eos_id)) if xl else None
    vae.register_to_config(scaling_factor=latent_scaling_factor(vae))
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
