"""`evaluate --model DIR --references PHOTO ...`: fixed-seed portraits scored against the references."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from personalization.cli import Command, CommandError
from personalization.commands.generate import add_model_arguments
from personalization.terminal import ProgressDisplay, add_progress_arguments, quiet_library_bars


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from personalization.evaluation import DEFAULT_PER_PROMPT, DEFAULT_SEED, DEFAULT_STEPS

    add_model_arguments(parser, scales=False)  # the manifest's recommended scales
    parser.add_argument(
        "--references", type=Path, nargs="+", required=True, help="the subject's reference photos"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"first seed (default {DEFAULT_SEED})")
    parser.add_argument(
        "--per-prompt",
        type=int,
        default=DEFAULT_PER_PROMPT,
        help=f"images per prompt (default {DEFAULT_PER_PROMPT})",
    )
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"sampling steps (default {DEFAULT_STEPS})"
    )
    parser.add_argument("--out", type=Path, help="also save the generated images in this folder")
    add_progress_arguments(parser)


def _run(args: argparse.Namespace) -> int:
    from personalization.artifacts import ArtifactError
    from personalization.evaluation import evaluate
    from personalization.generate import GenerationError, load_generator
    from personalization.models import ModelLoadError
    from personalization.scoring import ScoringError

    quiet_library_bars()
    try:
        pipe, manifest = load_generator(args.model, base_model=args.base_model, device=args.device)
        with ProgressDisplay("evaluate", quiet=args.quiet, every=args.log_every) as display:
            result = evaluate(
                pipe,
                manifest,
                args.references,
                seed=args.seed,
                per_prompt=args.per_prompt,
                steps=args.steps,
                progress=display,
            )
    except (ScoringError, ArtifactError, ModelLoadError, GenerationError, OSError) as error:
        raise CommandError(str(error)) from error
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for index, scored in enumerate(result.images):
            scored.image.save(args.out / f"{index:02d}-seed-{scored.seed}.png")
    print(json.dumps(result.to_dict(), indent=2))
    return 0


COMMAND = Command(
    name="evaluate",
    help="how well a trained model keeps its subject: fixed-seed portraits scored against the references",
    add_arguments=_add_arguments,
    run=_run,
)
