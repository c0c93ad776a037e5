"""Sampling speed: the product's generation and editing against a plain diffusers call.

    python bench/sample_speed.py --sd15 PATH --sdxl PATH [--model TRAINED_DIR] [--device cuda]
    python bench/sample_speed.py --real            # random weights, real SD 1.5 / SDXL architectures
    python bench/sample_speed.py --tiny            # the tiny random models at 64 px (CPU smoke run)

Measures, on one device and in one run, the median seconds of
- an SD 1.5 generation (default 512 px, 30 steps) through `personalization.generate`,
- the same pipeline called directly (`pipe(prompt, ...)`), the baseline,
- an edit (DDIM inversion + NIMA editing) through `personalization.edit`,
- an SDXL generation (default 1024 px) through `personalization.generate` and directly.
Goals on one H100: generation no slower than plain diffusers; an edit at most 2x a
plain generation. Calls alternate (ours, plain, ours, ...) after a warm-up call each, so
clock or thermal drift hits both sides alike. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DEFAULT_FACES, DEFAULT_WORK, ensure_model
from personalization import edit, generate
from personalization.models import load_pipeline, pick_device
from personalization.terminal import quiet_library_bars

PROMPT = "a photo of a person"


def _timed(device: torch.device, call: Callable[[], Any]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _alternate(
    device: torch.device, calls: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, tuple[float, float]]:
    """(median, fastest) seconds per call, after one warm-up of each, the calls interleaved.

    On a shared machine other jobs only ever add time, so the fastest call is the better
    estimate of the cost itself; the median is what a user waits.
    """
    for call in calls.values():
        call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            samples[name].append(_timed(device, call))
    return {name: (statistics.median(values), min(values)) for name, values in samples.items()}


def _pipeline(base: str, trained: str | None, device: torch.device) -> tuple[Any, Any]:
    """The pipeline in the product's default dtype for the device (bf16/fp16 on GPU, fp32 on CPU)."""
    if trained is not None:
        return generate.load_generator(trained, base_model=base, device=device)
    return load_pipeline(base, device=device), None


def _generation_pair(pipe: Any, manifest: Any, size: int, steps: int) -> dict[str, Callable[[], Any]]:
    prompt = PROMPT if manifest is None else f"a photo of {manifest.tokens['identity']} person"
    settings = generate.GenerationSettings(prompt=prompt, steps=steps, width=size, height=size, seed=0)
    if manifest is not None:
        settings.unet_scale, settings.text_scale = (
            manifest.default_scales["unet"],
            manifest.default_scales["text"],
        )

    def ours() -> Any:
        return generate.generate(pipe, manifest, settings)

    def plain() -> Any:
        return pipe(
            prompt,
            num_inference_steps=steps,
            width=size,
            height=size,
            generator=torch.Generator("cpu").manual_seed(0),
        )

    return {"generate": ours, "plain diffusers": plain}


def _edit_call(pipe: Any, manifest: Any, size: int, steps: int, photo_path: Path) -> Callable[[], Any]:
    # Without a trained folder the edit follows an existing word of the prompt instead of a token.
    identifier = "person" if manifest is None else manifest.tokens["identity"]
    source = f"a photo of {identifier}" if manifest is None else f"a photo of {identifier} person"
    settings = edit.EditSettings(
        source_prompt=source,
        target_prompt=f"{source}, smiling with teeth",
        identifier=identifier,
        steps=steps,
        resolution=size,
    )
    # A photo the size of a generation: the comparison is like for like (composite included).
    photo = ImageOps.fit(Image.open(photo_path).convert("RGB"), (size, size))

    def run() -> Any:
        return edit.edit_image(pipe, photo, settings)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sd15", help="SD 1.5 base model (folder or hub id)")
    parser.add_argument("--sdxl", help="SDXL base model (folder or hub id)")
    parser.add_argument("--model", help="trained SD 1.5 folder to apply (LoRA + tokens) for both sides")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--tiny", action="store_true", help="build and use the tiny random models at 64 px")
    sizes.add_argument(
        "--real", action="store_true", help="build and use random-weight SD 1.5 / SDXL (real architectures)"
    )
    parser.add_argument("--kinds", default="sd15,sdxl", help="with --tiny/--real: which (default sd15,sdxl)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="where built models are kept")
    parser.add_argument("--photo", type=Path, default=DEFAULT_FACES / "obama.jpg", help="the photo to edit")
    parser.add_argument("--device", help="cuda or cpu (default: CUDA when present)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, help="SD 1.5 size in px (default 512; 64 with --tiny)")
    parser.add_argument("--xl-size", type=int, help="SDXL size in px (default 1024; 64 with --tiny)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args(argv)

    quiet_library_bars()
    device = pick_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sd15, sdxl = args.sd15, args.sdxl
    if args.tiny or args.real:
        built = "tiny" if args.tiny else "real"
        kinds = args.kinds.split(",")
        sd15 = sd15 or (str(ensure_model(built, "sd15", args.work)) if "sd15" in kinds else None)
        sdxl = sdxl or (str(ensure_model(built, "sdxl", args.work)) if "sdxl" in kinds else None)
    size = args.size or (64 if args.tiny else 512)
    xl_size = args.xl_size or (64 if args.tiny else 1024)
    if sd15 is None and sdxl is None:
        parser.error("give --sd15 and/or --sdxl, or --tiny / --real")

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"
    print(f"device: {name}; torch {torch.__version__}; date {datetime.date.today().isoformat()}")
    print(f"{args.repeats} calls per measurement after one warm-up call each, interleaved")
    print("| measurement | median s | fastest s | median vs plain generation |")
    print("| --- | ---: | ---: | ---: |", flush=True)

    def row(label: str, timing: tuple[float, float], baseline: float) -> None:
        # Printed as measured: a run stopped at a time limit keeps its finished rows.
        median, fastest = timing
        print(f"| {label} | {median:.3f} | {fastest:.3f} | {median / baseline:.2f}x |", flush=True)

    if sd15 is not None:
        pipe, manifest = _pipeline(sd15, args.model, device)
        subject = ", trained subject (LoRA + token)" if manifest is not None else ""
        label = f"SD 1.5 {size} px, {args.steps} steps, {pipe.unet.dtype}{subject}"
        timings = _alternate(device, _generation_pair(pipe, manifest, size, args.steps), args.repeats)
        plain = timings["plain diffusers"][0]
        row(f"{label}: plain diffusers", timings["plain diffusers"], plain)
        row(f"{label}: generate", timings["generate"], plain)
        edit_call = _edit_call(pipe, manifest, size, args.steps, args.photo)
        edit_time = _alternate(device, {"edit": edit_call}, args.repeats)["edit"]
        row(f"{label}: edit (inversion + edit)", edit_time, plain)
    if sdxl is not None:
        pipe, _ = _pipeline(sdxl, None, device)
        label = f"SDXL {xl_size} px, {args.steps} steps, {pipe.unet.dtype}"
        timings = _alternate(device, _generation_pair(pipe, None, xl_size, args.steps), args.repeats)
        plain = timings["plain diffusers"][0]
        row(f"{label}: plain diffusers", timings["plain diffusers"], plain)
        row(f"{label}: generate", timings["generate"], plain)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
