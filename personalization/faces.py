"""Offline face analysis: detection, 5-point landmarks, 128-d identity embeddings.

Everything here runs on dlib (dlib-bin) with the models shipped by the
face-recognition-models package, restricted to the public-domain (CC0) ones: the
HOG frontal detector, the 5-point landmark model and the ResNet embedding model.
The 68-point model is trained on iBUG 300-W, whose licence excludes commercial
use, so no default path may depend on it.

One module serves data preparation, upload checks (one face, same person as the
enrollment photo) and output scoring, so that "the same person" means the same
thing everywhere in the product.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

# dlib's published operating point for its ResNet embedding: pairs of the same
# person fall under it, different people above (measured here: 0.07-0.20 vs 0.61-0.84).
SAME_PERSON_THRESHOLD = 0.6
# HOG detector confidence below which a detection is discarded: with one level of
# upsampling the detector finds a "face" in the astronaut photo's mission patch at 0.12.
DEFAULT_MIN_SCORE = 0.5
# Detection runs on a copy no larger than this (the HOG detector's cost grows with
# pixel count; faces worth training on stay well above its 80 px minimum).
DETECTION_MAX_SIDE = 800

_MODEL_FILES = {
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "embedding": "dlib_face_recognition_resnet_model_v1.dat",
}


class FaceModelsUnavailableError(RuntimeError):
    """The dlib model files could not be found (face-recognition-models not installed)."""


@dataclass(frozen=True)
class FaceBox:
    left: int
    top: int
    right: int
    bottom: int
    score: float

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def center(self) -> tuple[float, float]:
        return ((self.left + self.right) / 2.0, (self.top + self.bottom) / 2.0)


@dataclass(frozen=True)
class Face:
    """A detected face: its box and dlib's five landmarks in image coordinates.

    dlib's 5-point order is: 0-1 the outer and inner corner of the eye that appears
    on the image's right (the subject's left eye), 2-3 the outer and inner corner of
    the eye on the image's left, 4 the base of the nose.
    """

    box: FaceBox
    landmarks: np.ndarray  # shape (5, 2), float64, (x, y)

    @property
    def image_right_eye(self) -> np.ndarray:
        return np.asarray(self.landmarks[0:2].mean(axis=0))

    @property
    def image_left_eye(self) -> np.ndarray:
        return np.asarray(self.landmarks[2:4].mean(axis=0))

    @property
    def nose(self) -> np.ndarray:
        return np.asarray(self.landmarks[4])

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.image_right_eye - self.image_left_eye))


def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    # face-recognition-models locates its files through pkg_resources, which current
    # setuptools no longer ships, so the folder is found from the package spec instead.
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsUnavailableError("face-recognition-models is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _model_path(name: str) -> str:
    path = _models_dir() / _MODEL_FILES[name]
    if not path.is_file():
        raise FaceModelsUnavailableError(f"missing dlib model file {path}")
    return str(path)


def embedding_model_path() -> str:
    """dlib's descriptor ResNet file, which the training's PyTorch port reads its weights from."""
    return _model_path("embedding")


# dlib's predictors are not documented as thread-safe; workers and the web process
# may call from several threads, so each call holds this lock (calls are milliseconds).
_dlib_lock = threading.Lock()


@functools.cache
def _detector() -> Any:
    import dlib

    return dlib.get_frontal_face_detector()


@functools.cache
def _landmarker() -> Any:
    import dlib

    return dlib.shape_predictor(_model_path("landmarks5"))


@functools.cache
def _embedder() -> Any:
    import dlib

    return dlib.face_recognition_model_v1(_model_path("embedding"))


def load_rgb(source: str | Path | Image.Image) -> np.ndarray:
    """An image as an RGB uint8 array with its EXIF orientation applied.

    Phones store portraits sideways with an orientation tag; detection and
    training must see the photo the way a person does.
    """
    image = source if isinstance(source, Image.Image) else Image.open(source)
    upright = ImageOps.exif_transpose(image)
    return np.asarray(upright.convert("RGB"), dtype=np.uint8)


def detect_faces(
    rgb: np.ndarray,
    *,
    upsample: int = 1,
    min_score: float = DEFAULT_MIN_SCORE,
    max_side: int = DETECTION_MAX_SIDE,
) -> list[Face]:
    """All faces above `min_score`, largest first, with 5-point landmarks.

    Detection runs on a copy scaled to `max_side` for speed; landmarks are then
    fitted on the full-resolution image so crops and masks stay precise.
    """
    import dlib

    height, width = rgb.shape[:2]
    scale = min(1.0, max_side / float(max(height, width)))
    small = rgb
    if scale < 1.0:
        small = np.asarray(
            Image.fromarray(rgb).resize(
                (round(width * scale), round(height * scale)), Image.Resampling.BILINEAR
            )
        )
    with _dlib_lock:
        rects, scores, _ = _detector().run(np.ascontiguousarray(small), upsample, 0.0)
    faces: list[Face] = []
    for rect, score in zip(rects, scores, strict=True):
        if score < min_score:
            continue
        left = max(0, round(rect.left() / scale))
        top = max(0, round(rect.top() / scale))
        right = min(width, round(rect.right() / scale))
        bottom = min(height, round(rect.bottom() / scale))
        box = FaceBox(left, top, right, bottom, float(score))
        with _dlib_lock:
            shape = _landmarker()(rgb, dlib.rectangle(left, top, right, bottom))
        points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(5)], dtype=np.float64)
        faces.append(Face(box=box, landmarks=points))
    faces.sort(key=lambda face: face.box.width * face.box.height, reverse=True)
    return faces


def face_embedding(rgb: np.ndarray, face: Face) -> np.ndarray:
    """The 128-d identity embedding of one face (biometric data: store only encrypted)."""
    import dlib

    box = face.box
    rect = dlib.rectangle(box.left, box.top, box.right, box.bottom)
    with _dlib_lock:
        shape = _landmarker()(rgb, rect)
        descriptor = _embedder().compute_face_descriptor(np.ascontiguousarray(rgb), shape)
    return np.asarray(descriptor, dtype=np.float64)


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two embeddings; under SAME_PERSON_THRESHOLD means the same person."""
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


def _face_region(rgb: np.ndarray, face: Face) -> np.ndarray:
    box = face.box
    region = rgb[max(0, box.top) : box.bottom, max(0, box.left) : box.right]
    if region.size == 0:
        raise ValueError("face box lies outside the image")
    return region


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def sharpness(rgb: np.ndarray, face: Face) -> float:
    """Variance of the Laplacian over the face, normalised to a 256 px face.

    Blurry references teach the model blur; the variance of the Laplacian is the
    usual cheap focus measure. The face is resampled to a fixed size first so the
    number does not depend on the photo's resolution.
    """
    region = Image.fromarray(_face_region(rgb, face)).resize((256, 256), Image.Resampling.BILINEAR)
    luma = _luminance(np.asarray(region))
    laplacian = -4.0 * luma[1:-1, 1:-1] + luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:]
    return float(laplacian.var())


@dataclass(frozen=True)
class Exposure:
    mean: float  # mean luminance of the face, 0-255
    dark_fraction: float  # share of face pixels under 16
    bright_fraction: float  # share of face pixels over 239


def exposure(rgb: np.ndarray, face: Face) -> Exposure:
    """Brightness statistics of the face: under- and over-exposed faces lose identity detail."""
    luma = _luminance(_face_region(rgb, face))
    return Exposure(
        mean=float(luma.mean()),
        dark_fraction=float((luma < 16).mean()),
        bright_fraction=float((luma > 239).mean()),
    )
