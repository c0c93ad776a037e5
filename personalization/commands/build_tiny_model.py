"""`build-tiny-model OUT_DIR [--xl]`: the random-weight model used by tests, CI and the offline demo."""

from __future__ import annotations

import argparse
from pathlib import Path

from personalization.cli import Command, CommandError


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", type=Path, help="folder to write (diffusers layout, save_pretrained)")
    parser.add_argument("--xl", action="store_true", help="SDXL layout (two text encoders) instead of SD 1.5")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing non-empty folder")


def _run(args: argparse.Namespace) -> int:
    out_dir: Path = args.out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not args.force:
        raise CommandError(f"{out_dir} exists and is not empty (use --force to overwrite)")
    from personalization.tiny import build_tiny_model

    build_tiny_model(out_dir, xl=args.xl, seed=args.seed)
    print(f"tiny {'SDXL' if args.xl else 'SD 1.5'} model written to {out_dir}")
    return 0


COMMAND = Command(
    name="build-tiny-model",
    help="write a tiny random-weight SD 1.5 (or --xl SDXL) model folder for tests and offline demos",
    add_arguments=_add_arguments,
    run=_run,
)
