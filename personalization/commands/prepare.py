"""`prepare --images DIR --out DIR [--style]`: photos to a prepared training folder with a quality report."""

from __future__ import annotations

import argparse
from pathlib import Path

from personalization.cli import Command, CommandError


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--images", type=Path, required=True, help="folder of photos (NAME.txt beside a photo adds text)"
    )
    parser.add_argument("--out", type=Path, required=True, help="prepared folder to write")
    parser.add_argument(
        "--style",
        action="store_true",
        help="style (reference) photos: whole-photo crop, masks of faces and their complement",
    )
    parser.add_argument(
        "--resolution", type=int, default=512, help="training resolution in px (default 512; 1024 for SDXL)"
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=0.75,
        help="crop margin around the face, in face sizes per side (default 0.75)",
    )
    parser.add_argument(
        "--token", help="identifier token in the captions (default <sks>, or <style1> with --style)"
    )
    parser.add_argument("--class-word", default="person", help="the subject's class (default person)")
    parser.add_argument(
        "--caption", default="", help="text appended to every caption (e.g. 'outdoors, daylight')"
    )
    parser.add_argument(
        "--level-eyes",
        action="store_true",
        help="rotate crops so the eyes are level (roll is then not described)",
    )
    parser.add_argument(
        "--captioner", help="vision-language captioner as package.module:factory (default: none)"
    )
    parser.add_argument(
        "--upsample", type=int, default=1, help="face detector upsampling for small faces (default 1)"
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite an existing prepared folder (and its edited captions)"
    )


def _run(args: argparse.Namespace) -> int:
    from personalization.prepare import PrepareError, PrepareOptions, format_report, load_captioner, prepare

    try:
        options = PrepareOptions(
            resolution=args.resolution,
            margin=args.margin,
            style=args.style,
            token=args.token,
            class_word=args.class_word,
            caption=args.caption,
            level_eyes=args.level_eyes,
            captioner=load_captioner(args.captioner) if args.captioner else None,
            upsample=args.upsample,
            force=args.force,
        )
        result = prepare(args.images, args.out, options)
    except PrepareError as error:
        raise CommandError(str(error)) from error
    print(format_report(result))
    print(f"captions are plain files in {result.out_dir / 'captions'}: edit them before training if needed")
    return 0


COMMAND = Command(
    name="prepare",
    help="detect faces, crop, mask and caption photos for training; print a quality report",
    add_arguments=_add_arguments,
    run=_run,
)
