"""`fetch-face-mesh [--dir DIR]`: MediaPipe's face mesh and iris models, out of the mediapipe wheel."""

from __future__ import annotations

import argparse
from pathlib import Path

from personalization.cli import Command, CommandError


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        help="folder for the .tflite files (default: LIKENESS_FACE_MESH_DIR, else var/models/face-mesh)",
    )


def _run(args: argparse.Namespace) -> int:
    from personalization.facemesh import MEDIAPIPE_VERSION, default_models_dir, install_models
    from personalization.faces import FaceModelsUnavailableError

    folder: Path = args.dir or default_models_dir()
    try:
        written = install_models(folder)
    except (FaceModelsUnavailableError, OSError) as error:
        raise CommandError(str(error)) from error
    if written:
        print(
            f"{', '.join(written)} from mediapipe {MEDIAPIPE_VERSION} written to {folder} (sha256 verified)"
        )
    else:
        print(f"face mesh models in {folder} are present and verified")
    return 0


COMMAND = Command(
    name="fetch-face-mesh",
    help="put MediaPipe's face mesh and iris models (Apache-2.0) in place, verified by sha256",
    add_arguments=_add_arguments,
    run=_run,
)
