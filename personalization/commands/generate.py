"""`generate --model DIR --out DIR [--prompt ...] [--style [ROLE]]`: portraits of a trained subject."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

from personalization.cli import Command, CommandError
from personalization.terminal import ProgressDisplay, add_progress_arguments, quiet_library_bars


def add_model_arguments(parser: argparse.ArgumentParser, *, scales: bool = True) -> None:
    """Options shared by generate, edit and evaluate: the trained folder, its base model, device,
    and (unless the command uses the manifest's) the LoRA scales."""
    parser.add_argument("--model", type=Path, required=True, help="trained model folder (manifest.json)")
    parser.add_argument("--base-model", help="base model folder or hub id (default: the manifest's)")
    parser.add_argument("--device", help="cuda, cuda:1, cpu (default: CUDA when present)")
    if not scales:
        return
    parser.add_argument(
        "--unet-scale",
        type=float,
        help="UNet LoRA scale (generate: 0.6, MagiCapture's; edit: the manifest's)",
    )
    parser.add_argument(
        "--text-scale", type=float, help="text encoder LoRA scale (generate: 0.9; edit: the manifest's)"
    )


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from personalization.prompts import DEFAULT_PROMPT

    add_model_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="folder for the images and generation.json")
    parser.add_argument(
        "--prompt",
        default=DEFAULT_PROMPT,
        help="prompt; {identity}, {style} and {class_word} become the model's tokens "
        f"(default {DEFAULT_PROMPT!r})",
    )
    parser.add_argument(
        "--style",
        nargs="?",
        const="style",
        help="render in a trained style: appends ' in the <style1> style' (optional: the manifest role)",
    )
    parser.add_argument("--negative-prompt", default="", help="negative prompt")
    parser.add_argument("--count", type=int, default=1, help="how many images (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first image; image i uses seed+i")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps (default 50)")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance (default 7.5)")
    parser.add_argument(
        "--scheduler",
        default="default",
        help="default (the model's), ddim, pndm, euler, euler-a, dpm++2m, dpm++2m-karras, unipc, lms",
    )
    parser.add_argument("--width", type=int, help="width in px (default: the model's resolution)")
    parser.add_argument("--height", type=int, help="height in px (default: the model's resolution)")
    parser.add_argument("--hires-scale", type=float, help="second pass: upscale factor (e.g. 2 for SD 1.5)")
    parser.add_argument("--hires-strength", type=float, default=0.4, help="second pass img2img strength")
    parser.add_argument(
        "--hires-mode", choices=("latent", "image"), default="latent", help="upscale the latent or the image"
    )
    parser.add_argument(
        "--super-resolution",
        default=os.environ.get("LIKENESS_SUPER_RESOLUTION_PLUGIN"),
        help="super-resolution plugin FILE.py:FUNCTION (default $LIKENESS_SUPER_RESOLUTION_PLUGIN)",
    )
    parser.add_argument(
        "--face-restoration",
        default=os.environ.get("LIKENESS_FACE_RESTORATION_PLUGIN"),
        help="face-restoration plugin FILE.py:FUNCTION (default $LIKENESS_FACE_RESTORATION_PLUGIN)",
    )
    parser.add_argument("--max-batch", type=int, help="most images per pipeline call (default: all that fit)")
    add_progress_arguments(parser)


def _run(args: argparse.Namespace) -> int:
    from personalization.artifacts import ArtifactError
    from personalization.generate import (
        GenerationError,
        GenerationSettings,
        HiresSettings,
        generate,
        load_generator,
    )
    from personalization.models import ModelLoadError
    from personalization.prompts import PromptError

    # Scales left out fall back to GenerationSettings' defaults (MagiCapture's 0.6 / 0.9).
    scales = {
        name: value
        for name, value in (("unet_scale", args.unet_scale), ("text_scale", args.text_scale))
        if value is not None
    }
    settings = GenerationSettings(
        prompt=args.prompt,
        style=args.style,
        negative_prompt=args.negative_prompt,
        count=args.count,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        scheduler=args.scheduler,
        width=args.width,
        height=args.height,
        hires=None
        if args.hires_scale is None
        else HiresSettings(scale=args.hires_scale, strength=args.hires_strength, mode=args.hires_mode),
        super_resolution=args.super_resolution or None,
        face_restoration=args.face_restoration or None,
        max_batch=args.max_batch,
        **scales,
    )
    quiet_library_bars()
    try:
        pipe, manifest = load_generator(args.model, base_model=args.base_model, device=args.device)
        with ProgressDisplay("generate", quiet=args.quiet, every=args.log_every) as display:
            result = generate(pipe, manifest, settings, progress=display)
    except (GenerationError, PromptError, ArtifactError, ModelLoadError) as error:
        raise CommandError(str(error)) from error
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for image, seed in zip(result.images, result.seeds, strict=True):
        name = f"seed-{seed}.png"
        image.save(out / name)
        files.append(name)
    record = {
        "model": str(args.model),
        "prompt": result.prompt,
        "negative_prompt": result.negative_prompt,
        "seeds": result.seeds,
        "files": files,
        "settings": asdict(settings),
    }
    (out / "generation.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{len(files)} image(s) written to {out}")
    return 0


COMMAND = Command(
    name="generate",
    help="generate portraits of a trained subject, alone or in a trained style",
    add_arguments=_add_arguments,
    run=_run,
)
