"""`train --method identity|multiconcept ...`: train a subject (and a style) into a loadable folder."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from personalization.cli import Command, CommandError
from personalization.presets import PRESET_NAMES, TRAINING_BOUNDS
from personalization.terminal import ProgressDisplay, add_progress_arguments, quiet_library_bars


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--method",
        choices=("identity", "multiconcept"),
        required=True,
        help="identity: LIPE identity prior; multiconcept: MagiCapture identity + style",
    )
    add(
        "--base-model",
        default=os.environ.get("LIKENESS_BASE_MODEL", "var/models/tiny-sd"),
        help="hub id or local folder, SD 1.5 or SDXL (default: $LIKENESS_BASE_MODEL or var/models/tiny-sd)",
    )
    add("--images", type=Path, required=True, help="the subject's folder written by `prepare`")
    add("--style-images", type=Path, help="multiconcept: the style folder written by `prepare --style`")
    add("--out", type=Path, required=True, help="output folder (pipe.load_lora_weights(OUT) loads it)")
    add(
        "--preset",
        choices=PRESET_NAMES,
        help="quick (try the loop), standard (the method's defaults) or max (final quality): steps, rank, "
        "batch, cadences (docs/personalization.md); the options below that it sets become checked overrides",
    )
    add(
        "--resolution",
        type=int,
        help="the size the photos were prepared at (with --preset: default the base model's own)",
    )
    add("--steps", type=int, help="total steps (default 800 identity, 1200 + 1500 multiconcept)")
    add(
        "--phase1-steps",
        type=int,
        help="multiconcept: embeddings-only steps (default 1200, or 4/9 of --steps)",
    )
    add("--rank", type=int, help="LoRA rank (default 4)")
    add("--lora-alpha", type=float, help="LoRA alpha (default: the rank)")
    add("--unet-lr", type=float, help="UNet LoRA learning rate (default 1e-4 identity, 4e-4 multiconcept)")
    add("--text-lr", type=float, help="multiconcept phase 2: text-encoder LoRA (default 4e-5)")
    add("--embedding-lr", type=float, help="multiconcept phase 1: token embeddings (default 2e-3)")
    add(
        "--joint-embedding-lr",
        type=float,
        help="multiconcept phase 2: token embeddings (default 1e-4); every multiconcept rate decays "
        "linearly to 0 within its phase",
    )
    add(
        "--weight-decay",
        type=float,
        default=1e-3,
        help="AdamW weight decay: identity LoRA, every multiconcept phase-2 group (default 1e-3)",
    )
    add(
        "--max-grad-norm",
        type=float,
        default=1.0,
        help="gradient clipping norm (default 1.0; multiconcept phase 1 is not clipped, as officially)",
    )
    add(
        "--augmentation-variants",
        type=int,
        default=4,
        help="flip (p 0.5, left/right swapped in the caption) and colour-jitter variants per photo, "
        "each encoded once (default 4; 0 off)",
    )
    add("--batch-size", type=int, help="photos per step (default 1; prior images are added to it)")
    add("--seed", type=int, help="seed of every random draw: same seed, same result (default 0)")
    add(
        "--prior-preservation",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="identity: regularise with a class set generated once per base model and cached (default on)",
    )
    add("--num-class-images", type=int, help="size of the class set (default 100)")
    add("--prior-loss-weight", type=float, default=1.0, help="weight of the prior loss (default 1.0)")
    add("--class-image-steps", type=int, default=30, help="sampling steps per class image (default 30)")
    add("--cache-dir", type=Path, help="class-set cache (default $LIKENESS_CACHE_DIR or ~/.cache/likeness)")
    add("--attention-loss-weight", type=float, default=2.5, help="attention refocusing weight (default 2.5)")
    add(
        "--identity-loss-weight",
        type=float,
        default=0.25,
        help="multiconcept: identity loss weight (default 0.25, as the official run; 0 turns it off)",
    )
    add("--init-word", help="multiconcept: word the identity token starts from (default: the class word)")
    add("--gradient-checkpointing", action="store_true", help="trade compute for memory")
    add("--compile", action="store_true", help="torch.compile the UNet")
    add(
        "--mixed-precision",
        choices=("auto", "no", "bf16"),
        default="auto",
        help="auto: bf16 autocast on CUDA, fp32 on CPU; bf16: bf16 autocast on any device",
    )
    add("--device", help="cuda, cuda:1, cpu (default: CUDA when present)")
    add("--checkpoint-every", type=int, help="checkpoint every N steps (default 250; 0 off)")
    add("--preview-every", type=int, help="save a preview image every N steps (default 0: off)")
    add("--preview-steps", type=int, help="sampling steps of a preview (default 20)")
    add("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    add_progress_arguments(parser)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig's preset-governed values: a preset's with the options given as checked overrides,
    or (without --preset) just the options given, the rest left to TrainConfig's defaults."""
    from personalization.models import ModelLoadError, native_resolution
    from personalization.presets import PresetError, resolve_training

    given = {key: getattr(args, key) for key in TRAINING_BOUNDS if getattr(args, key, None) is not None}
    if args.preset is None:
        return {"method": args.method, **given}
    try:
        base = args.resolution or native_resolution(args.base_model)
        resolved = resolve_training(args.method, args.preset, given, base_resolution=base)
    except (PresetError, ModelLoadError) as error:
        raise CommandError(str(error)) from error
    chosen = ", ".join(f"{key} {value}" for key, value in resolved.values.items())
    overridden = f" (overridden: {', '.join(resolved.overridden)})" if resolved.overridden else ""
    print(f"preset {args.preset} ({args.method}): {chosen}{overridden}", file=sys.stderr, flush=True)
    return resolved.config_kwargs()


def _run(args: argparse.Namespace) -> int:
    from personalization.training import TrainConfig, TrainingError, TrainProgress, train

    config = TrainConfig(
        base_model=args.base_model,
        images=args.images,
        out=args.out,
        style_images=args.style_images,
        lora_alpha=args.lora_alpha,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        joint_embedding_lr=args.joint_embedding_lr,
        augmentation_variants=args.augmentation_variants,
        prior_loss_weight=args.prior_loss_weight,
        class_image_steps=args.class_image_steps,
        cache_dir=args.cache_dir,
        attention_loss_weight=args.attention_loss_weight,
        identity_loss_weight=args.identity_loss_weight,
        init_word=args.init_word,
        gradient_checkpointing=args.gradient_checkpointing,
        compile=args.compile,
        mixed_precision=args.mixed_precision,
        device=args.device,
        resume=args.resume,
        **_settings(args),
    )
    previews = args.out / "previews"
    quiet_library_bars()

    def report(progress: TrainProgress, display: ProgressDisplay) -> None:
        for notice in progress.notices:
            display.write(f"notice: {notice}")
        if progress.preview is not None:
            previews.mkdir(parents=True, exist_ok=True)
            progress.preview.save(previews / f"step-{progress.step:07d}.png")
        losses = " ".join(f"{name}={value:.4f}" for name, value in progress.losses.items())
        rates = " ".join(f"{name}={value:.1e}" for name, value in progress.learning_rates.items())
        display.update(progress, f"{losses} lr {rates}", brief=f"loss {progress.losses['total']:.4f}")

    try:
        with ProgressDisplay("train", quiet=args.quiet, every=args.log_every) as display:
            result = train(config, lambda progress: report(progress, display))
    except (TrainingError, FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    if result.status == "stopped":
        print(f"stopped at step {result.steps}; resume with --resume (checkpoint {result.checkpoint})")
        return 0
    print(f"trained {result.steps} steps; model in {result.out_dir}")
    for stage, losses in result.validation_losses.items():
        print(f"validation loss {stage}: " + " ".join(f"{k}={v:.4f}" for k, v in losses.items()))
    return 0


COMMAND = Command(
    name="train",
    help="train an identity (LIPE) or identity + style (MagiCapture) model from prepared folders",
    add_arguments=_add_arguments,
    run=_run,
)
