"""Operations and kernel launches of one training step, counted on the meta device (no compute needed).

    python bench/train_flops.py [--batch 1] [--tflops 990]

What a plain DreamBooth-LoRA step computes (VAE encode of the photos, the text encoder on the
prompt for SD 1.5, the UNet forward and backward with LoRA on its attention projections) against
the identity method's step (the UNet alone: latents and caption embeddings are cached once per
dataset), at the real SD 1.5 (512 px) and SDXL (1024 px) sizes. The ratio is the speed-up a
device would show if every step were limited by arithmetic; launch overhead, which dominates
small batches on a large GPU, moves the measured ratio towards the ratio of ATen operations (each
about one kernel launch in eager mode), also counted. The floor is the step's operations at
`--tflops` (default: an H100's dense bf16 rate from its datasheet).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import real_pipeline  # noqa: E402
from personalization.terminal import quiet_library_bars  # noqa: E402

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
SIZES = {"sd15": 512, "sdxl": 1024}


def _counted(work: Any) -> tuple[float, int]:
    """(GFLOP, ATen operations other than views) of running `work`."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    class Launches(TorchDispatchMode):
        """Counts the operations that launch work: views only re-describe memory."""

        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            self.count += 0 if func.is_view else 1
            return func(*args, **(kwargs or {}))

    launches = Launches()
    with FlopCounterMode(display=False) as flops, launches:
        work()
    return flops.get_total_flops() / 1e9, launches.count


def count(kind: str, batch: int) -> dict[str, tuple[float, int]]:
    """(GFLOP, launches) of each part of a step for one architecture."""
    import torch
    from peft import LoraConfig

    pipe = real_pipeline(kind, "meta")
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if kind == "sdxl" else [])
    for module in (pipe.unet, pipe.vae, *encoders):
        module.requires_grad_(False)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGETS))
    side = SIZES[kind]
    latent = side // pipe.vae_scale_factor
    with torch.device("meta"):
        pixels = torch.randn(batch, 3, side, side)
        ids = torch.zeros(batch, 77, dtype=torch.long)
        noisy = torch.randn(batch, 4, latent, latent)
        context = torch.randn(batch, 77, pipe.unet.config.cross_attention_dim)
        timesteps = torch.full((batch,), 500)
        added: dict[str, Any] | None = None
        if kind == "sdxl":
            added = {"text_embeds": torch.randn(batch, 1280), "time_ids": torch.randn(batch, 6)}

    def unet_step() -> None:
        prediction = pipe.unet(noisy, timesteps, context, added_cond_kwargs=added).sample
        prediction.float().pow(2).mean().backward()

    text = [_counted(lambda encoder=encoder: encoder(ids)) for encoder in encoders]
    return {
        "vae encode": _counted(lambda: pipe.vae.encode(pixels).latent_dist.sample()),
        "text encode": (sum(part[0] for part in text), sum(part[1] for part in text)),
        "unet fwd+bwd": _counted(unet_step),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tflops", type=float, default=990.0, help="device rate for the floor (TFLOP/s)")
    args = parser.parse_args()
    quiet_library_bars()
    print(f"GFLOP (ATen operations, about one kernel launch each in eager mode) per step, batch {args.batch}")
    columns = ["model", "px", "VAE encode", "text encode", "UNet fwd+bwd", "plain step", "identity step"]
    print("| " + " | ".join([*columns, "ratio (FLOP)", "ratio (launches)"]) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind, side in SIZES.items():
        parts = count(kind, args.batch)
        # The SDXL script precomputes its prompt embeddings; the SD 1.5 script encodes every step.
        summed = ["vae encode", "unet fwd+bwd"] + (["text encode"] if kind == "sd15" else [])
        plain = tuple(sum(parts[name][index] for name in summed) for index in (0, 1))
        identity = parts["unet fwd+bwd"]
        cells = [f"{flop:.0f} ({launches})" for flop, launches in parts.values()]
        steps = [
            f"{flop:.0f} ({launches}), floor {flop / args.tflops:.1f} ms"
            for flop, launches in (plain, identity)
        ]
        ratios = [f"{plain[index] / identity[index]:.2f}x" for index in (0, 1)]
        print(f"| {kind} | {side} | " + " | ".join([*cells, *steps, *ratios]) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
