"""Dense face landmarks offline: MediaPipe's 468-point face mesh and its iris model.

dlib's HOG detector and 5-point model (CC0, personalization.faces) find and align the face;
the 5 points cannot say whether eyes are closed, where they look or whether the mouth smiles,
and the 68-point dlib model that could is licensed for non-commercial use only. MediaPipe's
face_landmark.tflite (468 points with depth) and iris_landmark.tflite are Apache-2.0 and ship
inside the mediapipe 0.10.21 wheel of the package registry. mediapipe itself pins numpy<2, so
the two files are taken out of the wheel (`python -m personalization fetch-face-mesh`, run by
`make setup`) and run with LiteRT (ai-edge-litert), Google's standalone TFLite runtime.

The crops follow MediaPipe's own graphs (mediapipe/modules/face_landmark and iris_landmark):
a square region 1.5x the landmarks' extent turned so the eye line is level, [0, 1] input
values; for the iris a square 2.3x the eye-corner distance, the image's right eye mirrored.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from personalization.faces import Face, FaceModelsUnavailableError

MEDIAPIPE_VERSION = "0.10.21"
# The files taken out of the wheel and their sha256: a different file is refused, not run.
MODEL_FILES = {
    "face_landmark.tflite": (
        "mediapipe/modules/face_landmark/face_landmark.tflite",
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    ),
    "iris_landmark.tflite": (
        "mediapipe/modules/iris_landmark/iris_landmark.tflite",
        "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
    ),
}
# One fixed wheel (the .tflite files are the same in every platform's wheel), so the download
# does not depend on the machine that runs it.
_WHEEL_PLATFORM = (
    "--platform",
    "manylinux_2_28_x86_64",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
)
MESH_INPUT = 192
IRIS_INPUT = 64
MESH_ROI_SCALE = 1.5
IRIS_ROI_SCALE = 2.3
# The mesh model's own face score (sigmoid of its second output) under which the crop holds no
# face: real faces here score above 0.99, background boxes under 0.02.
MIN_CONFIDENCE = 0.5
# dlib's box runs from the eyebrows to the chin; the mesh's own extent adds the forehead, so
# the first crop is taken a little larger than MediaPipe's 1.5 and re-centred on the mesh.
_FIRST_ROI_SCALE = 1.9
# Mesh indices MediaPipe's graphs use: eye corners (image-left eye 33 outer, 133 inner; image-right
# eye 362 inner, 263 outer).
IMAGE_LEFT_EYE_CORNERS = (33, 133)
IMAGE_RIGHT_EYE_CORNERS = (362, 263)


def default_models_dir() -> Path:
    """LIKENESS_FACE_MESH_DIR, else var/models/face-mesh of the checkout (where `make setup` puts them)."""
    configured = os.environ.get("LIKENESS_FACE_MESH_DIR")
    return (
        Path(configured)
        if configured
        else Path(__file__).resolve().parents[1] / "var" / "models" / "face-mesh"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def missing_models(folder: Path) -> list[str]:
    """The model files absent from `folder` or different from the pinned ones."""
    return [
        name
        for name, (_, expected) in MODEL_FILES.items()
        if not (folder / name).is_file() or _sha256(folder / name) != expected
    ]


def install_models(folder: Path) -> list[str]:
    """Puts the pinned model files in `folder` (downloading the mediapipe wheel only if needed).

    Returns the names written; nothing when every file is already there and verified, so
    `make setup` can run it every time.
    """
    needed = missing_models(folder)
    if not needed:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"mediapipe=={MEDIAPIPE_VERSION}",
            "--no-deps",
            "--only-binary=:all:",
            *_WHEEL_PLATFORM,
            "--quiet",
            "--dest",
            scratch,
        ]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(Path(scratch).glob("mediapipe-*.whl"))
        if completed.returncode != 0 or not wheels:
            raise FaceModelsUnavailableError(
                f"could not download mediapipe {MEDIAPIPE_VERSION} from the package index: "
                f"{completed.stderr.strip()[-500:]}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in needed:
                member, expected = MODEL_FILES[name]
                data = wheel.read(member)
                actual = hashlib.sha256(data).hexdigest()
                if actual != expected:
                    raise FaceModelsUnavailableError(
                        f"{member} in the mediapipe wheel has sha256 {actual}, expected {expected}"
                    )
                partial = folder / f".{name}.partial"
                partial.write_bytes(data)
                partial.replace(folder / name)
    return needed


def _model_path(name: str) -> str:
    folder = default_models_dir()
    path = folder / name
    if not path.is_file():
        raise FaceModelsUnavailableError(
            f"missing face mesh model {path}: run `make setup` or "
            f"`python -m personalization fetch-face-mesh` (LIKENESS_FACE_MESH_DIR names the folder)"
        )
    return str(path)


# LiteRT interpreters hold their tensors: one call at a time per interpreter.
_lock = threading.Lock()


@functools.cache
def _load(path: str, expected_sha256: str) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    if _sha256(Path(path)) != expected_sha256:
        raise FaceModelsUnavailableError(f"{path} is not the pinned model file (its sha256 differs)")
    interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def _interpreter(name: str) -> Any:
    """The loaded model, cached per file so a changed LIKENESS_FACE_MESH_DIR is honoured."""
    return _load(_model_path(name), MODEL_FILES[name][1])


def _invoke(name: str, tensor: np.ndarray) -> list[np.ndarray]:
    interpreter = _interpreter(name)
    with _lock:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor[None].astype(np.float32))
        interpreter.invoke()
        return [np.array(interpreter.get_tensor(out["index"])) for out in interpreter.get_output_details()]


@dataclass(frozen=True)
class _Roi:
    """A square region of the image turned by `angle` (radians, the eye line's angle in the image)."""

    cx: float
    cy: float
    side: float
    angle: float

    def matrix(self, size: int) -> np.ndarray:
        """2x3 affine map from crop pixels (of a size x size crop) to image pixels."""
        scale = self.side / size
        cos, sin = math.cos(self.angle) * scale, math.sin(self.angle) * scale
        linear = np.array([[cos, -sin], [sin, cos]])
        offset = np.array([self.cx, self.cy]) - linear @ np.array([size / 2.0, size / 2.0])
        return np.hstack([linear, offset[:, None]])

    def crop(self, image: Image.Image, size: int) -> np.ndarray:
        affine = self.matrix(size)
        warped = image.transform(
            (size, size),
            Image.Transform.AFFINE,
            tuple(affine.reshape(-1)),
            resample=Image.Resampling.BILINEAR,
        )
        return np.asarray(warped, dtype=np.float32) / 255.0

    def to_image(self, points: np.ndarray, size: int) -> np.ndarray:
        """Crop coordinates (x, y[, z]) to image pixels; depth is scaled like x."""
        affine = self.matrix(size)
        out = np.array(points, dtype=np.float64)
        out[:, :2] = points[:, :2] @ affine[:, :2].T + affine[:, 2]
        if out.shape[1] > 2:
            out[:, 2] = points[:, 2] * self.side / size
        return out


def _roi_from_points(points: np.ndarray, start: int, end: int, scale: float) -> _Roi:
    """MediaPipe's landmarks-to-ROI: turned by the start->end vector, square, `scale` x the extent."""
    direction = points[end, :2] - points[start, :2]
    angle = math.atan2(float(direction[1]), float(direction[0]))
    cos, sin = math.cos(angle), math.sin(angle)
    local = points[:, :2] @ np.array([[cos, -sin], [sin, cos]])
    low, high = local.min(axis=0), local.max(axis=0)
    centre_local = (low + high) / 2.0
    centre = np.array([[cos, -sin], [sin, cos]]) @ centre_local
    return _Roi(float(centre[0]), float(centre[1]), float((high - low).max() * scale), angle)


@dataclass(frozen=True)
class DenseFace:
    """468 mesh points (x, y in image pixels, z depth in the same unit, smaller = nearer the camera),
    the two iris centres and the mesh model's face confidence (0-1)."""

    points: np.ndarray  # (468, 3)
    iris_image_left: np.ndarray  # (2,) centre of the iris of the eye on the image's left
    iris_image_right: np.ndarray  # (2,)
    confidence: float


def _iris_centre(
    image: Image.Image, points: np.ndarray, corners: tuple[int, int], mirrored: bool
) -> np.ndarray:
    roi = _roi_from_points(points[list(corners)], 0, 1, IRIS_ROI_SCALE)
    crop = roi.crop(image, IRIS_INPUT)
    if mirrored:
        crop = crop[:, ::-1]
    _, iris = _invoke("iris_landmark.tflite", np.ascontiguousarray(crop))
    centre = iris.reshape(-1, 3)[0, :2].copy()
    if mirrored:
        centre[0] = IRIS_INPUT - centre[0]
    return np.asarray(roi.to_image(centre[None], IRIS_INPUT)[0, :2])


def dense_landmarks(rgb: np.ndarray, face: Face) -> DenseFace:
    """The face mesh of one detected face: a first pass on a crop from dlib's box and eyes, a second
    on MediaPipe's crop from the first mesh (as its tracking graph does), then the irises."""
    image = Image.fromarray(rgb)
    eye_vector = face.image_right_eye - face.image_left_eye
    cx, cy = face.box.center
    roi = _Roi(
        float(cx),
        float(cy),
        float(max(face.box.width, face.box.height) * _FIRST_ROI_SCALE),
        math.atan2(float(eye_vector[1]), float(eye_vector[0])),
    )
    points = np.zeros((468, 3))
    confidence = 0.0
    for _ in range(2):
        mesh, flag = _invoke("face_landmark.tflite", roi.crop(image, MESH_INPUT))
        points = roi.to_image(mesh.reshape(468, 3), MESH_INPUT)
        confidence = float(1.0 / (1.0 + math.exp(-float(flag.reshape(-1)[0]))))
        roi = _roi_from_points(points, IMAGE_LEFT_EYE_CORNERS[0], IMAGE_RIGHT_EYE_CORNERS[1], MESH_ROI_SCALE)
    return DenseFace(
        points=points,
        iris_image_left=_iris_centre(image, points, IMAGE_LEFT_EYE_CORNERS, mirrored=False),
        iris_image_right=_iris_centre(image, points, IMAGE_RIGHT_EYE_CORNERS, mirrored=True),
        confidence=confidence,
    )
