"""`edit --model DIR --image PHOTO --target-prompt ... | --preset NAME --out FILE`: LIPE non-rigid editing."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from personalization.cli import Command, CommandError
from personalization.commands.generate import add_model_arguments
from personalization.terminal import ProgressDisplay, add_progress_arguments, quiet_library_bars


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from personalization.prompts import PRESETS

    add_model_arguments(parser)
    parser.add_argument("--image", type=Path, required=True, help="the photo of the subject to edit")
    parser.add_argument(
        "--out", type=Path, required=True, help="output PNG; masks and a JSON record go beside it"
    )
    parser.add_argument(
        "--source-prompt",
        help="describes the photo; must name the subject ({identity} becomes its token). Default: the "
        "photo's own caption, as prepare writes it (pose, eyes, gaze, mouth, smile read from the photo)",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-prompt", help="describes the wanted result; must name the subject")
    target.add_argument("--preset", choices=sorted(PRESETS), help="write the target prompt from the source")
    parser.add_argument("--negative-prompt", default="", help="negative prompt of the target branch")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    parser.add_argument("--guidance", type=float, default=7.5, help="target branch guidance (default 7.5)")
    parser.add_argument(
        "--mask-steps", type=int, default=5, help="target steps the mask is read over (default 5)"
    )
    parser.add_argument("--mask-threshold", type=float, default=0.5, help="attention threshold (default 0.5)")
    parser.add_argument("--blend-start", type=int, default=0, help="first blended step (default 0)")
    parser.add_argument("--blend-end", type=int, help="blending stops before this step (default: all steps)")
    parser.add_argument(
        "--dilate",
        type=float,
        default=None,
        help="mask dilation in px at model resolution (default: 2.3%% of its side)",
    )
    parser.add_argument(
        "--feather",
        type=float,
        default=None,
        help="composite feathering in px at model resolution (default: 2.3%% of its side)",
    )
    parser.add_argument("--masactrl", action="store_true", help="mutual self-attention (keeps appearance)")
    parser.add_argument("--masactrl-start-step", type=int, default=4, help="MasaCtrl start step (default 4)")
    parser.add_argument("--masactrl-start-layer", type=int, help="MasaCtrl start layer (default 10 of 16)")
    parser.add_argument("--mask", type=Path, help="painted mask (white: may change), same size as the photo")
    parser.add_argument(
        "--mask-mode",
        choices=("replace", "constrain"),
        default="constrain",
        help="the painted mask replaces the automatic one, or limits it (default constrain)",
    )
    parser.add_argument("--resolution", type=int, help="working resolution (default: the model's)")
    parser.add_argument(
        "--inversion-refinements", type=int, default=0, help="fixed-point refinements per inversion step"
    )
    add_progress_arguments(parser)


def _run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from personalization.artifacts import ADAPTER_NAME, ArtifactError, set_trained_scales
    from personalization.captions import photo_prompt
    from personalization.edit import EditError, EditSettings, edit_image, load_user_mask
    from personalization.faces import FaceModelsUnavailableError
    from personalization.generate import load_generator
    from personalization.models import ModelLoadError
    from personalization.prompts import PromptError, expand_prompt, preset_prompt

    try:
        photo = Image.open(args.image)
        photo.load()
    except (OSError, UnidentifiedImageError) as error:
        raise CommandError(f"cannot read the photo {args.image}: {error}") from error
    try:
        # The pixels the edit inverts (no EXIF turn: edit_image does not apply one either).
        source_template = args.source_prompt or photo_prompt(np.asarray(photo.convert("RGB")))
    except FaceModelsUnavailableError as error:
        raise CommandError(str(error)) from error
    quiet_library_bars()
    try:
        pipe, manifest = load_generator(args.model, base_model=args.base_model, device=args.device)
        if args.unet_scale is not None or args.text_scale is not None:
            set_trained_scales(
                pipe,
                ADAPTER_NAME,
                unet_scale=manifest.default_scales.get("unet", 1.0)
                if args.unet_scale is None
                else args.unet_scale,
                text_scale=manifest.default_scales.get("text", 1.0)
                if args.text_scale is None
                else args.text_scale,
            )
        identifier = manifest.tokens["identity"]
        source = expand_prompt(source_template, manifest.tokens, manifest.class_word)
        target = (
            preset_prompt(source, args.preset, identifier)
            if args.preset
            else expand_prompt(args.target_prompt, manifest.tokens, manifest.class_word)
        )
        settings = EditSettings(
            source_prompt=source,
            target_prompt=target,
            identifier=identifier,
            steps=args.steps,
            guidance=args.guidance,
            negative_prompt=expand_prompt(args.negative_prompt, manifest.tokens, manifest.class_word),
            mask_steps=args.mask_steps,
            mask_threshold=args.mask_threshold,
            blend_start=args.blend_start,
            blend_end=args.blend_end,
            dilate_px=args.dilate,
            feather_px=args.feather,
            masactrl=args.masactrl,
            masactrl_start_step=args.masactrl_start_step,
            masactrl_start_layer=args.masactrl_start_layer,
            user_mask=None if args.mask is None else load_user_mask(str(args.mask), photo.size),
            user_mask_mode=args.mask_mode,
            resolution=args.resolution,
            inversion_refinements=args.inversion_refinements,
        )
        with ProgressDisplay("edit", quiet=args.quiet, every=args.log_every) as display:
            result = edit_image(pipe, photo, settings, progress=display)
    except (EditError, PromptError, ArtifactError, ModelLoadError) as error:
        raise CommandError(str(error)) from error
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    result.image.save(out)
    written = {"image": out.name, "region": f"{out.stem}.region.png"}
    result.region.save(out.with_name(written["region"]))
    for key, mask in (("subject_mask", result.subject_mask), ("target_mask", result.target_mask)):
        if mask is not None:
            written[key] = f"{out.stem}.{key.replace('_', '-')}.png"
            mask.save(out.with_name(written[key]))
    record = asdict(settings)
    record.pop("user_mask")
    record["user_mask"] = None if args.mask is None else str(args.mask)
    summary = {
        "model": str(args.model),
        "photo": str(args.image),
        "source_prompt_from": "--source-prompt" if args.source_prompt else "the photo's own caption",
        "files": written,
        "settings": record,
        "crop": {"box": list(result.crop.box), "scale": result.crop.scale},  # the window edited
    }
    out.with_name(f"{out.stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"edited photo written to {out} (masks beside it)")
    if result.crop.downscaled:
        scale = f"{result.crop.scale:.0%}"
        print(f"the edit region is larger than the working size: edited at {scale} of the photo's resolution")
    return 0


COMMAND = Command(
    name="edit",
    help="non-rigid edit of a photo of a trained subject (expression, pose, gaze), background kept",
    add_arguments=_add_arguments,
    run=_run,
)
