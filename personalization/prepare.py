"""Data preparation: from a folder of photos to a prepared folder (see personalization.dataset).

Identity photos: exactly one face each (detected offline with dlib's CC0 models), a square crop
around it at the training resolution with a margin, a soft face mask (the face mesh's outline and
the ears facing the camera; floor 0.01, as in MagiCapture) and an editing-oriented caption. LIPE's
key ingredient is the action-descriptive caption: the pose and expression of each photo are written
out ("head turned slightly to the left, eyes open, looking at the camera, smiling with teeth") so
the trained model can later be asked for another one (personalization.captions, from MediaPipe's
468-point face mesh). A configured captioner (a vision-language model) may add clothing and setting.
Every photo must show the same person: one whose identity embedding is far from the rest of the set
is left out with the distance as the reason.

Style photos (MagiCapture's reference set): a centre square crop of the whole photo (the style
is the background, light and clothing), the face mask of every face in it and its complement,
the region the style token learns from.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from personalization import captions, faces
from personalization.dataset import (
    MANIFEST_NAME,
    MASK_FLOOR,
    QUALITY_NAME,
    DatasetKind,
    PreparedDataset,
    save_mask,
)

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
DEFAULT_IDENTITY_IDENTIFIER = "<sks>"
DEFAULT_STYLE_IDENTIFIER = "<style1>"

# Quality warnings (face sharpness is the Laplacian variance on a 256 px face; sharp photos
# here measure 100-320, a 90 px face upscaled 18).
MIN_SHARPNESS = 40.0
EXPOSURE_MEAN_RANGE = (50.0, 205.0)
MAX_CLIPPED_FRACTION = 0.25


class PrepareError(ValueError):
    """Nothing usable could be prepared, or the output folder would overwrite edited captions."""


class Captioner(Protocol):
    """A vision-language model that describes a photo (expression, gaze, clothing, setting).

    Configured by import path `package.module:factory`; the factory takes no arguments.
    """

    def describe(self, image: Image.Image) -> str: ...


def load_captioner(spec: str) -> Captioner:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise PrepareError(f"captioner must be given as package.module:factory, not {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise PrepareError(f"cannot load captioner {spec}: {error}") from error
    captioner = factory()
    if not callable(getattr(captioner, "describe", None)):
        raise PrepareError(f"captioner {spec} has no describe(image) method")
    return captioner


@dataclass
class PrepareOptions:
    resolution: int = 512
    margin: float = 0.75  # crop side = face size x (1 + 2 x margin)
    style: bool = False
    token: str | None = None
    class_word: str = "person"
    caption: str = ""  # appended to every caption
    level_eyes: bool = False  # rotate so the eyes are level (then roll is no longer described)
    captioner: Captioner | None = None
    upsample: int = 1
    force: bool = False
    # A photo whose face is farther than this from the set's person is left out (identity only).
    same_person_threshold: float = faces.SAME_PERSON_THRESHOLD

    @property
    def resolved_token(self) -> str:
        return self.token or (DEFAULT_STYLE_IDENTIFIER if self.style else DEFAULT_IDENTITY_IDENTIFIER)


@dataclass
class PhotoReport:
    source: str
    accepted: bool
    reason: str = ""
    name: str = ""
    face_size_px: int = 0
    crop_side_px: int = 0
    upscale: float = 0.0
    sharpness: float = 0.0
    exposure_mean: float = 0.0
    dark_fraction: float = 0.0
    bright_fraction: float = 0.0
    pose: dict[str, float] = field(default_factory=dict)
    faces: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class PrepareResult:
    out_dir: Path
    dataset: PreparedDataset
    reports: list[PhotoReport]

    @property
    def rejected(self) -> list[PhotoReport]:
        return [report for report in self.reports if not report.accepted]


def _crop_box(face: faces.Face, width: int, height: int, margin: float) -> tuple[float, float, float]:
    """Centre and side of the square crop, kept inside the photo (shifted, then shrunk if needed)."""
    box = face.box
    side = max(box.width, box.height) * (1.0 + 2.0 * margin)
    side = min(side, float(width), float(height))
    cx, cy = box.center
    x0 = min(max(cx - side / 2.0, 0.0), width - side)
    y0 = min(max(cy - side / 2.0, 0.0), height - side)
    return x0, y0, side


def _quality(report: PhotoReport, rgb: np.ndarray, face: faces.Face, resolution: int) -> None:
    light = faces.exposure(rgb, face)
    report.face_size_px = max(face.box.width, face.box.height)
    report.sharpness = round(faces.sharpness(rgb, face), 1)
    report.exposure_mean = round(light.mean, 1)
    report.dark_fraction = round(light.dark_fraction, 4)
    report.bright_fraction = round(light.bright_fraction, 4)
    if report.sharpness < MIN_SHARPNESS:
        report.warnings.append(f"face looks blurry (sharpness {report.sharpness:.0f} < {MIN_SHARPNESS:.0f})")
    low, high = EXPOSURE_MEAN_RANGE
    if (
        not low <= light.mean <= high
        or max(light.dark_fraction, light.bright_fraction) > MAX_CLIPPED_FRACTION
    ):
        report.warnings.append(f"face badly exposed (mean brightness {light.mean:.0f}/255)")
    if report.crop_side_px and report.crop_side_px < resolution:
        report.upscale = round(resolution / report.crop_side_px, 2)
        report.warnings.append(
            f"photo too small for {resolution} px training: the crop is upscaled x{report.upscale}"
        )


def _caption(parts: Sequence[str]) -> str:
    return ", ".join(part.strip().strip(",") for part in parts if part and part.strip())


def _user_text(photo: Path, options: PrepareOptions) -> list[str]:
    sidecar = photo.with_suffix(".txt")
    own = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else ""
    return [own, options.caption]


def list_photos(folder: Path) -> list[Path]:
    return sorted(
        path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )


@dataclass
class _Prepared:
    """One photo's outputs, held until the whole set is known (identity is checked across it)."""

    report: PhotoReport
    crop: Image.Image
    face_mask: np.ndarray
    style_mask: np.ndarray | None
    caption: str
    extra: dict[str, Any]
    embedding: np.ndarray | None = None


def _rounded(points: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 2), round(float(y), 2)] for x, y in points]


def _prepare_identity(
    photo: Path, rgb: np.ndarray, options: PrepareOptions, report: PhotoReport
) -> _Prepared | None:
    found = faces.detect_faces(rgb, upsample=options.upsample)
    report.faces = len(found)
    if len(found) != 1:
        report.reason = (
            "no face found"
            if not found
            else f"{len(found)} faces found; an identity photo must show exactly one person"
        )
        return None
    face = found[0]
    described = captions.describe_face(rgb, face)
    if not described.is_face:
        report.reason = f"no face found (the face mesh scores the detected face {described.confidence:.2f})"
        return None
    height, width = rgb.shape[:2]
    image = Image.fromarray(rgb)
    cx, cy = face.box.center
    roll = described.pose.roll

    def level(points: np.ndarray) -> np.ndarray:
        return points

    if options.level_eyes:
        # Rotate the photo about the face centre so the head is upright (the fitted roll).
        image = image.rotate(roll, center=(cx, cy), resample=Image.Resampling.BICUBIC)
        angle = math.radians(-roll)
        turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])

        def level(points: np.ndarray) -> np.ndarray:
            return (points - (cx, cy)) @ turn.T + (cx, cy)

    x0, y0, side = _crop_box(face, width, height, options.margin)
    report.crop_side_px = round(side)
    crop = image.resize(
        (options.resolution, options.resolution), Image.Resampling.LANCZOS, box=(x0, y0, x0 + side, y0 + side)
    )
    scale = options.resolution / side

    def to_crop(points: np.ndarray) -> np.ndarray:
        return (level(points) - (x0, y0)) * scale

    box_corners = np.array(
        [[face.box.left, face.box.top], [face.box.right, face.box.bottom]], dtype=np.float64
    )
    # The box stays axis-aligned: the rotation turns about its centre.
    crop_box = ((box_corners - (x0, y0)) * scale).reshape(-1)
    mask = captions.face_oval_mask(
        options.resolution, [to_crop(polygon) for polygon in captions.face_outline(described)]
    )
    _quality(report, rgb, face, options.resolution)
    report.pose = described.measures()
    words = described.descriptors(include_roll=not options.level_eyes)
    vlm = options.captioner.describe(crop) if options.captioner else ""
    caption = _caption(
        [
            f"a photo of {options.resolved_token} {options.class_word}",
            *words,
            vlm,
            *_user_text(photo, options),
        ]
    )
    extra = {
        "face_box": [round(float(value), 2) for value in crop_box],
        "landmarks": _rounded(to_crop(face.landmarks)),
        "descriptors": words,
        "pose": report.pose,
    }
    return _Prepared(report, crop, mask, None, caption, extra, embedding=faces.face_embedding(rgb, face))


def _prepare_style(photo: Path, rgb: np.ndarray, options: PrepareOptions, report: PhotoReport) -> _Prepared:
    height, width = rgb.shape[:2]
    side = min(width, height)
    x0, y0 = (width - side) / 2.0, (height - side) / 2.0
    report.crop_side_px = side
    crop = Image.fromarray(rgb).resize(
        (options.resolution, options.resolution), Image.Resampling.LANCZOS, box=(x0, y0, x0 + side, y0 + side)
    )
    # Faces the mesh confirms: a detector's false positive must not be masked out of the style.
    described = [
        (face, description)
        for face in faces.detect_faces(rgb, upsample=options.upsample)
        if (description := captions.describe_face(rgb, face)).is_face
    ]
    found = [face for face, _ in described]
    report.faces = len(found)
    scale = options.resolution / side
    outlines: list[np.ndarray] = []
    first_box: list[float] | None = None
    first_landmarks: list[list[float]] | None = None
    for face, description in described:
        outlines += [(polygon - (x0, y0)) * scale for polygon in captions.face_outline(description)]
        if first_box is None:
            corners = np.array(
                [[face.box.left, face.box.top], [face.box.right, face.box.bottom]], dtype=np.float64
            )
            first_box = [round(float(value), 2) for value in ((corners - (x0, y0)) * scale).reshape(-1)]
            first_landmarks = _rounded((face.landmarks - (x0, y0)) * scale)
    face_mask = (
        captions.face_oval_mask(options.resolution, outlines)
        if outlines
        else np.zeros((options.resolution,) * 2)
    )
    if found:
        _quality(report, rgb, found[0], options.resolution)
        subject = f"a photo of a {options.class_word} in the {options.resolved_token} style"
    else:
        if side < options.resolution:
            report.upscale = round(options.resolution / side, 2)
            report.warnings.append(
                f"photo too small for {options.resolution} px training: upscaled x{report.upscale}"
            )
        subject = f"a photo in the {options.resolved_token} style"
    vlm = options.captioner.describe(crop) if options.captioner else ""
    caption = _caption([subject, vlm, *_user_text(photo, options)])
    extra = {"face_box": first_box, "landmarks": first_landmarks, "faces": len(found)}
    return _Prepared(report, crop, face_mask, 1.0 - face_mask, caption, extra)


def flag_other_people(prepared: Sequence[_Prepared], threshold: float = faces.SAME_PERSON_THRESHOLD) -> None:
    """Rejects the photos whose face is not the person most of the set shows.

    The set's person is the largest group of photos within `threshold` of one another's face
    (dlib's operating point, the one the upload checks use); a photo farther than that from the
    group's mean embedding is rejected with its distance. A set with no majority (two photos of
    two people, three of three) cannot say who the subject is and is refused as a whole.
    """
    embeddings = [item.embedding for item in prepared if item.embedding is not None]
    if len(embeddings) < 2:
        return
    matrix = np.stack(embeddings)
    close = np.linalg.norm(matrix[:, None] - matrix[None], axis=-1) <= threshold
    sizes = close.sum(axis=1)
    largest = int(sizes.max())
    if largest * 2 <= len(embeddings):
        raise PrepareError(
            "these photos show different people and no one person is in most of them "
            f"(largest group of the same face: {largest} of {len(embeddings)}); keep the photos of one person"
        )
    centre = matrix[close[int(np.argmax(sizes))]].mean(axis=0)
    for item in prepared:
        if item.embedding is None:
            continue
        distance = faces.embedding_distance(item.embedding, centre)
        item.report.pose["identity_distance"] = round(distance, 3)
        if distance > threshold:
            item.report.accepted = False
            item.report.reason = (
                f"a different person from the rest of the set (face distance {distance:.2f} "
                f"to the others, the same person is under {threshold:.2f})"
            )


def prepare(
    images_dir: str | Path, out_dir: str | Path, options: PrepareOptions | None = None
) -> PrepareResult:
    """Prepares every photo of `images_dir` into `out_dir`; bad photos are reported, never fatal alone."""
    opts = options or PrepareOptions()
    source_dir, target = Path(images_dir), Path(out_dir)
    if not source_dir.is_dir():
        raise PrepareError(f"{source_dir} is not a folder")
    if opts.resolution < 64 or opts.resolution % 8:
        raise PrepareError(f"resolution must be a multiple of 8, at least 64 (got {opts.resolution})")
    if (target / MANIFEST_NAME).exists() and not opts.force:
        raise PrepareError(f"{target} already holds a prepared set (its captions may be edited); use --force")
    photos = list_photos(source_dir)
    if not photos:
        raise PrepareError(f"{source_dir} has no photos ({', '.join(sorted(IMAGE_SUFFIXES))})")
    kind: DatasetKind = "style" if opts.style else "identity"
    reports: list[PhotoReport] = []
    prepared: list[_Prepared] = []
    for photo in photos:
        report = PhotoReport(source=photo.name, accepted=False)
        reports.append(report)
        try:
            rgb = faces.load_rgb(photo)
        except (UnidentifiedImageError, OSError) as error:
            report.reason = f"unreadable image: {error}"
            continue
        item = (
            _prepare_style(photo, rgb, opts, report)
            if opts.style
            else _prepare_identity(photo, rgb, opts, report)
        )
        if item is not None:
            report.accepted = True
            prepared.append(item)
    flag_other_people(prepared, opts.same_person_threshold)
    for sub in ("images", "masks", "captions"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    for item in prepared:
        if not item.report.accepted:
            continue
        name = f"{len(entries) + 1:04d}"
        item.report.name = name
        item.crop.save(target / "images" / f"{name}.png")
        save_mask(np.maximum(item.face_mask, MASK_FLOOR), target / "masks" / f"{name}_face.png")
        entry: dict[str, Any] = {
            "name": name,
            "source": item.report.source,
            "image": f"images/{name}.png",
            "face_mask": f"masks/{name}_face.png",
            "caption": f"captions/{name}.txt",
            **item.extra,
        }
        if item.style_mask is not None:
            save_mask(np.maximum(item.style_mask, MASK_FLOOR), target / "masks" / f"{name}_style.png")
            entry["style_mask"] = f"masks/{name}_style.png"
        (target / "captions" / f"{name}.txt").write_text(item.caption + "\n", encoding="utf-8")
        entries.append(entry)
    manifest: dict[str, Any] = {
        "kind": kind,
        "resolution": opts.resolution,
        "margin": opts.margin,
        "token": opts.resolved_token,
        "class_word": opts.class_word,
        "level_eyes": opts.level_eyes,
        "images": entries,
        "rejected": [{"source": r.source, "reason": r.reason} for r in reports if not r.accepted],
    }
    (target / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    (target / QUALITY_NAME).write_text(json.dumps([asdict(report) for report in reports], indent=2) + "\n")
    if not entries:
        reasons = "; ".join(f"{r.source}: {r.reason}" for r in reports)
        raise PrepareError(f"no usable photo in {source_dir}: {reasons}")
    dataset = PreparedDataset.load(target)
    manifest["dataset_hash"] = dataset.hash()
    (target / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return PrepareResult(out_dir=target, dataset=dataset, reports=reports)


def format_report(result: PrepareResult) -> str:
    """The quality report as a text table for the terminal."""
    lines = [f"{'photo':<24} {'status':<9} {'face px':>7} {'sharp':>6} {'light':>5}  pose / notes"]
    for report in result.reports:
        if not report.accepted:
            lines.append(f"{report.source:<24} {'REJECTED':<9} {'':>7} {'':>6} {'':>5}  {report.reason}")
            continue
        pose = " ".join(
            f"{key}={report.pose[key]:+.0f}" for key in ("yaw", "pitch", "roll") if key in report.pose
        )
        notes = "; ".join(report.warnings)
        lines.append(
            f"{report.source:<24} {report.name:<9} {report.face_size_px:>7} {report.sharpness:>6.0f} "
            f"{report.exposure_mean:>5.0f}  {pose} {notes}".rstrip()
        )
    lines.append(f"{len(result.dataset.items)} prepared, {len(result.rejected)} rejected")
    lines.append(f"dataset hash {result.dataset.hash()}")
    return "\n".join(lines)
