"""`score --image FILE [--references ...] [--original FILE --region MASK] [--prompt TEXT]`: JSON scores."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from personalization.cli import Command, CommandError


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", type=Path, required=True, help="the generated or edited image")
    parser.add_argument(
        "--references", type=Path, nargs="+", help="the subject's reference photos (identity)"
    )
    parser.add_argument(
        "--threshold", type=float, help="identity distance threshold (default: faces.py's 0.6)"
    )
    parser.add_argument("--original", type=Path, help="the photo before editing (background preservation)")
    parser.add_argument("--region", type=Path, help="the edit's region image (non-zero: may change)")
    parser.add_argument("--prompt", help="text for the CLIP score")
    parser.add_argument(
        "--clip-model",
        default=os.environ.get("LIKENESS_CLIP_MODEL"),
        help="local CLIP model folder (default $LIKENESS_CLIP_MODEL); without one: CLIP score unavailable",
    )


def _run(args: argparse.Namespace) -> int:
    from personalization import faces
    from personalization.scoring import (
        ScoringError,
        as_dict,
        background_score,
        clip_score,
        identity_score,
        reference_embeddings,
        region_from_mask_image,
    )

    if (args.original is None) != (args.region is None):
        raise CommandError("background preservation needs both --original and --region")
    if args.references is None and args.original is None and args.prompt is None:
        raise CommandError("nothing to score: give --references, --original with --region, or --prompt")
    report: dict[str, Any] = {"image": str(args.image)}
    try:
        if args.references:
            threshold = faces.SAME_PERSON_THRESHOLD if args.threshold is None else args.threshold
            score = identity_score(args.image, reference_embeddings(args.references), threshold=threshold)
            report["identity"] = as_dict(score)
        if args.original is not None:
            region = region_from_mask_image(args.region)
            report["background"] = as_dict(background_score(args.original, args.image, region))
        if args.prompt is not None:
            report["clip"] = as_dict(clip_score(args.image, args.prompt, args.clip_model or None))
    except (ScoringError, OSError) as error:
        raise CommandError(str(error)) from error
    print(json.dumps(report, indent=2))
    return 0


COMMAND = Command(
    name="score",
    help="identity similarity, background preservation and CLIP score of an output, as JSON",
    add_arguments=_add_arguments,
    run=_run,
)
