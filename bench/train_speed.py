"""Training throughput of both methods beside a plain diffusers DreamBooth-LoRA loop.

    python bench/train_speed.py --size tiny                 # the tiny model at 64 px (CPU-friendly)
    python bench/train_speed.py --size real                 # SD 1.5 at 512 px, SDXL at 1024 px (GPU)
    python bench/train_speed.py --size real --full-run      # + one 800-step identity run at 512 px

"real" builds random-weight models with the real SD 1.5 / SDXL architectures (speed does not
depend on the weights). "plain" is the inner loop of diffusers' train_dreambooth_lora.py
(train_dreambooth_lora_sdxl.py for SDXL) with their defaults: the VAE encodes every step, SD 1.5
encodes the prompt every step (SDXL precomputes it), LoRA rank 4 on to_q/k/v/out, AdamW,
clipping 1.0, bf16 autocast on GPU. Both methods run through personalization.training.Trainer.

Every measurement runs in its own process, so peak memory (CUDA: max allocated; CPU: peak RSS)
belongs to that measurement alone. The first --warmup steps of each phase are not timed; the rate
is 1 / the median step time, which other jobs on a shared machine disturb least.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import DEFAULT_FACES, DEFAULT_WORK, ensure_data, ensure_model  # noqa: E402
from personalization.terminal import quiet_library_bars  # noqa: E402

RESOLUTION = {("tiny", "sd15"): 64, ("tiny", "sdxl"): 64, ("real", "sd15"): 512, ("real", "sdxl"): 1024}
LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]


# ---- one measurement (runs in a child process) -------------------------------------------------


def _peak_memory_mib(device: Any) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _rate(times: list[float], warmup: int) -> dict[str, float]:
    """Steps per second from the median and from the fastest step time.

    On a shared machine other jobs slow random steps down; the fastest step is what a step costs
    undisturbed, the median what a run gets.
    """
    timed = times[warmup:]
    if len(timed) < 2:
        raise ValueError("too few steps to time: raise --steps")
    durations = [later - earlier for earlier, later in itertools.pairwise(timed)]
    return {"median": 1.0 / statistics.median(durations), "best": 1.0 / min(durations)}


def plain_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """The inner loop of diffusers' train_dreambooth_lora(.py|_sdxl.py) on the same model and device."""
    import torch
    from diffusers import DDPMScheduler
    from peft import LoraConfig
    from torch.nn import functional

    from personalization.dataset import PreparedDataset, load_image_tensor
    from personalization.models import load_pipeline, pick_device, pipeline_kind

    torch.manual_seed(0)
    device = pick_device(spec["device"])
    autocast = device.type == "cuda"
    pipe = load_pipeline(spec["model"], device=device)
    kind = pipeline_kind(pipe)
    unet, vae = pipe.unet, pipe.vae
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if kind == "sdxl" else [])
    for module in (unet, vae, *encoders):
        module.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=LORA_TARGETS))
    params = [p for p in unet.parameters() if p.requires_grad]
    for parameter in params:
        parameter.data = parameter.data.float()
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    dataset = PreparedDataset.load(spec["source"])
    pixels = torch.stack([load_image_tensor(item.image) for item in dataset.items]).to(device, unet.dtype)
    prompt = f"a photo of {dataset.token} {dataset.class_word}"
    batch, resolution = spec["batch"], dataset.resolution

    def encode() -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        if kind == "sd15":
            ids = pipe.tokenizer([prompt] * batch, padding="max_length", max_length=77, return_tensors="pt")
            return pipe.text_encoder(ids.input_ids.to(device))[0], None
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt, device=device, num_images_per_prompt=batch, do_classifier_free_guidance=False
        )
        size = float(resolution)
        time_ids = torch.tensor([[size, size, 0, 0, size, size]], device=device, dtype=embeds.dtype).repeat(
            batch, 1
        )
        return embeds, {"text_embeds": pooled, "time_ids": time_ids}

    precomputed = encode() if kind == "sdxl" else None  # the SDXL script precomputes the instance prompt
    times: list[float] = []
    unet.train()
    for _ in range(spec["warmup"] + spec["steps"]):
        chosen = torch.randint(len(pixels), (batch,))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            latents = vae.encode(pixels[chosen]).latent_dist.sample() * vae.config.scaling_factor
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), device=device)
            noisy = scheduler.add_noise(latents, noise, timesteps)
            embeds, added = precomputed if precomputed is not None else encode()
            prediction = unet(noisy, timesteps, embeds, added_cond_kwargs=added).sample
        loss = functional.mse_loss(prediction.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        loss.item()  # the script logs the loss every step (a device sync)
        times.append(time.perf_counter())
    return {"phases": {"plain": _rate(times, spec["warmup"])}, "peak_mib": _peak_memory_mib(device)}


def method_loop(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from personalization.models import pick_device
    from personalization.training import TrainConfig, Trainer, TrainProgress

    per_phase = spec["warmup"] + spec["steps"]
    multiconcept = spec["variant"] == "multiconcept"
    config = TrainConfig(
        method="multiconcept" if multiconcept else "identity",
        base_model=spec["model"],
        images=Path(spec["source"]),
        style_images=Path(spec["style"]) if multiconcept else None,
        out=Path(spec["out"]),
        steps=2 * per_phase if multiconcept else per_phase,
        phase1_steps=per_phase if multiconcept else None,
        batch_size=spec["batch"],
        checkpoint_every=0,
        validation_repeats=0,
        device=spec["device"],
        compile=spec["compile"],
    )
    times: dict[str, list[float]] = {}

    def progress(event: TrainProgress) -> None:
        times.setdefault(event.phase, []).append(time.perf_counter())

    torch.manual_seed(0)
    Trainer(config, progress).run()
    rates = {phase: _rate(stamps, spec["warmup"]) for phase, stamps in times.items()}
    return {"phases": rates, "peak_mib": _peak_memory_mib(pick_device(spec["device"]))}


def full_run(spec: dict[str, Any]) -> dict[str, Any]:
    """A whole identity training of 800 steps at 512 px: load, cache, train, save."""
    from personalization.models import pick_device
    from personalization.training import TrainConfig, train

    started = time.perf_counter()
    train(
        TrainConfig(
            method="identity",
            base_model=spec["model"],
            images=Path(spec["source"]),
            out=Path(spec["out"]),
            steps=800,
            checkpoint_every=0,
            validation_repeats=0,
            device=spec["device"],
            compile=spec["compile"],
        )
    )
    return {
        "wall_s": time.perf_counter() - started,
        "peak_mib": _peak_memory_mib(pick_device(spec["device"])),
    }


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    quiet_library_bars()

    torch.backends.cuda.matmul.allow_tf32 = True
    if spec["variant"] == "plain":
        return plain_loop(spec)
    if spec["variant"] == "full":
        return full_run(spec)
    return method_loop(spec)


# ---- the driver --------------------------------------------------------------------------------


def _device_description(device: str | None) -> str:
    import torch

    from personalization.models import pick_device

    chosen = pick_device(device)
    if chosen.type == "cuda":
        return f"{torch.cuda.get_device_name(chosen)}, torch {torch.__version__}"
    processor = platform.processor() or platform.machine()
    return f"CPU ({processor}, {torch.get_num_threads()} threads), torch {torch.__version__}"


class MeasurementError(RuntimeError):
    """One measurement's process failed (out of memory, say); the others still run."""


def _spawn(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        print(done.stderr[-4000:], file=sys.stderr, flush=True)
        raise MeasurementError(last[0])
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _names(listed: str) -> list[str]:
    return [name for name in listed.split(",") if name]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=("tiny", "real"), default="tiny", help="model size (default tiny)")
    parser.add_argument("--kinds", default="sd15,sdxl", help="architectures (default sd15,sdxl)")
    parser.add_argument("--batches", default="1,4", help="batch sizes (default 1,4)")
    parser.add_argument("--variants", default="plain,identity,multiconcept", help="what to measure")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per phase (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--device", help="cuda or cpu (default: CUDA when present)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet in both methods")
    parser.add_argument("--threads", type=int, help="torch CPU threads per measurement (default: torch's)")
    parser.add_argument("--full-run", action="store_true", help="also time an 800-step identity run (sd15)")
    parser.add_argument(
        "--px", type=int, help="override the resolution (a smoke run of the real architectures on a CPU)"
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="models, data, outputs")
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES, help="folder of the shared face photos")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    quiet_library_bars()
    device = _device_description(args.device)
    date = datetime.now(UTC).date().isoformat()
    rows: list[dict[str, Any]] = []
    print(f"# {date} on {device}, size {args.size}")
    print(
        "| model | px | batch | loop | steps/s median | vs plain | steps/s best step | vs plain | peak MiB |"
    )
    print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")

    def keep(row: dict[str, Any]) -> None:
        rows.append(row)
        if args.json:  # after every row: a run stopped at a time limit keeps what it measured
            args.json.write_text(json.dumps(rows, indent=2))

    # An empty list measures nothing of that kind: `--kinds= --full-run` times the full run alone.
    for kind in _names(args.kinds):
        model = ensure_model(args.size, kind, args.work)
        resolution = args.px or RESOLUTION[(args.size, kind)]
        source, style = ensure_data(args.faces, resolution, args.work)
        for batch in (int(value) for value in _names(args.batches)):
            plain_rate: dict[str, float] | None = None
            for variant in _names(args.variants):
                out = args.work / "runs" / f"{kind}-{batch}-{variant}"
                shutil.rmtree(out, ignore_errors=True)
                spec = {
                    "variant": variant,
                    "model": str(model),
                    "source": str(source),
                    "style": str(style),
                    "out": str(out),
                    "batch": batch,
                    "steps": args.steps,
                    "warmup": args.warmup,
                    "device": args.device,
                    "compile": args.compile,
                    "threads": args.threads,
                }
                where = {"date": date, "device": device, "model": kind, "size": args.size, "px": resolution}
                try:
                    result = _spawn(spec)
                except MeasurementError as failure:
                    keep({**where, "batch": batch, "loop": variant, "failed": str(failure)})
                    print(f"| {kind} {args.size} | {resolution} | {batch} | {variant} | failed: {failure} |")
                    continue
                for phase, rate in result["phases"].items():
                    label = variant if phase in (variant, "plain") else f"{variant} ({phase})"
                    if variant == "plain":
                        plain_rate = rate
                    ratios = [
                        f"{rate[key] / plain_rate[key]:.2f}x" if plain_rate else "-"
                        for key in ("median", "best")
                    ]
                    keep(
                        {
                            **where,
                            "batch": batch,
                            "loop": label,
                            "steps_per_s": rate,
                            "peak_mib": result["peak_mib"],
                        }
                    )
                    print(
                        f"| {kind} {args.size} | {resolution} | {batch} | {label} | {rate['median']:.2f} | "
                        f"{ratios[0]} | {rate['best']:.2f} | {ratios[1]} | {result['peak_mib']:.0f} |",
                        flush=True,
                    )
    if args.full_run:
        model = ensure_model(args.size, "sd15", args.work)
        full_px = args.px or RESOLUTION[(args.size, "sd15")]
        source, _ = ensure_data(args.faces, full_px, args.work)
        out = args.work / "runs" / "full"
        shutil.rmtree(out, ignore_errors=True)
        result = _spawn(
            {
                "variant": "full",
                "model": str(model),
                "source": str(source),
                "out": str(out),
                "device": args.device,
                "compile": args.compile,
                "threads": args.threads,
            }
        )
        keep({"date": date, "device": device, "loop": "identity 800 steps", **result})
        print(
            f"identity, 800 steps at {full_px} px: {result['wall_s']:.0f} s wall, "
            f"peak {result['peak_mib']:.0f} MiB",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
