"""Data preparation: from a folder of photos to a prepared folder (see personalization.dataset).

Identity photos: exactly one face each (detected offline with dlib's CC0 models), a square crop
around it at the training resolution with a margin, a soft ellipse face mask (floor 0.01, as in
MagiCapture) and an editing-oriented caption. LIPE's key ingredient is the action-descriptive
caption: the pose of each photo is written out ("head turned slightly to the left, chin raised")
so the trained model can later be asked for a pose. Descriptors come from the five landmarks;
eyes and mouth state need more points than the CC0 5-point model gives, so they come only from a
configured captioner (a vision-language model), never guessed.

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

from personalization import faces
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

# Pose thresholds, on ratios to the distance between the eye centres (measured on the sample
# photos: frontal faces give |yaw| < 0.05 and pitch 0.74-0.78; a raised chin gives 0.57).
YAW_SLIGHT = 0.08
YAW_TURNED = 0.25
PITCH_UP = 0.64
PITCH_DOWN = 0.92
ROLL_TILT_DEGREES = 8.0

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


@dataclass(frozen=True)
class Pose:
    """Head pose estimated from the five landmarks, in image terms (left = the image's left).

    yaw: horizontal offset of the nose from the eye midpoint / eye distance (negative: the face
    turns to the image's left). pitch: vertical offset / eye distance (small: chin raised).
    roll: angle of the eye line in degrees (positive: the head leans to the image's right).
    """

    yaw: float
    pitch: float
    roll: float

    @classmethod
    def from_face(cls, face: faces.Face) -> Pose:
        left, right, nose = face.image_left_eye, face.image_right_eye, face.nose
        distance = float(np.linalg.norm(right - left))
        across = (right - left) / distance
        down = np.array([-across[1], across[0]])
        offset = nose - (left + right) / 2.0
        roll = math.degrees(math.atan2(float(right[1] - left[1]), float(right[0] - left[0])))
        return cls(yaw=float(offset @ across) / distance, pitch=float(offset @ down) / distance, roll=roll)

    def descriptors(self, *, include_roll: bool = True) -> list[str]:
        words: list[str] = []
        side = "left" if self.yaw < 0 else "right"
        if abs(self.yaw) >= YAW_TURNED:
            words.append(f"head turned to the {side}")
        elif abs(self.yaw) >= YAW_SLIGHT:
            words.append(f"head turned slightly to the {side}")
        else:
            words.append("facing the camera")
        if self.pitch < PITCH_UP:
            words.append("chin raised, looking up")
        elif self.pitch > PITCH_DOWN:
            words.append("head lowered, looking down")
        if include_roll and abs(self.roll) >= ROLL_TILT_DEGREES:
            words.append(f"head tilted to the {'right' if self.roll > 0 else 'left'}")
        return words


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


def ellipse_face_mask(
    size: int, box: Sequence[float], landmarks: np.ndarray, roll_degrees: float
) -> np.ndarray:
    """A soft ellipse over the face (1 inside, smooth edge, 0 outside), before the floor.

    Fitted from the detector box (eyebrows to chin) stretched up to the forehead, turned with
    the eye line, and widened until every landmark lies well inside it. A face parser would
    follow the outline more closely; the licensed CC0 models give only the box and 5 points.
    """
    left, top, right, bottom = box
    centre = np.array([(left + right) / 2.0, (top + bottom) / 2.0 - 0.08 * (bottom - top)])
    axes = np.array([0.55 * (right - left), 0.68 * (bottom - top)])
    angle = math.radians(roll_degrees)
    rotation = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])

    def radius(points: np.ndarray) -> np.ndarray:
        local = (points - centre) @ rotation.T
        return np.sqrt(((local / axes) ** 2).sum(axis=-1))

    widest = float(radius(landmarks).max())
    if widest > 0.8:
        axes = axes * widest / 0.8
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    r = radius(np.stack([xs, ys], axis=-1))
    edge = np.clip((1.15 - r) / 0.3, 0.0, 1.0)
    return edge * edge * (3.0 - 2.0 * edge)


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


def _prepare_identity(
    photo: Path, rgb: np.ndarray, options: PrepareOptions, report: PhotoReport
) -> tuple[Image.Image, np.ndarray, None, str, dict[str, Any]] | None:
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
    pose = Pose.from_face(face)
    height, width = rgb.shape[:2]
    image = Image.fromarray(rgb)
    cx, cy = face.box.center
    landmarks = face.landmarks.copy()
    box_corners = np.array(
        [[face.box.left, face.box.top], [face.box.right, face.box.bottom]], dtype=np.float64
    )
    roll = pose.roll
    if options.level_eyes:
        # Rotate the photo about the face centre so the eye line is horizontal.
        image = image.rotate(roll, center=(cx, cy), resample=Image.Resampling.BICUBIC)
        angle = math.radians(-roll)
        turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        landmarks = (landmarks - (cx, cy)) @ turn.T + (cx, cy)
        roll = 0.0
    x0, y0, side = _crop_box(face, width, height, options.margin)
    report.crop_side_px = round(side)
    crop = image.resize(
        (options.resolution, options.resolution), Image.Resampling.LANCZOS, box=(x0, y0, x0 + side, y0 + side)
    )
    scale = options.resolution / side
    crop_landmarks = (landmarks - (x0, y0)) * scale
    crop_box = ((box_corners - (x0, y0)) * scale).reshape(-1)
    mask = ellipse_face_mask(options.resolution, list(crop_box), crop_landmarks, roll)
    _quality(report, rgb, face, options.resolution)
    report.pose = {"yaw": round(pose.yaw, 3), "pitch": round(pose.pitch, 3), "roll": round(pose.roll, 1)}
    described = pose.descriptors(include_roll=not options.level_eyes)
    vlm = options.captioner.describe(crop) if options.captioner else ""
    caption = _caption(
        [
            f"a photo of {options.resolved_token} {options.class_word}",
            *described,
            vlm,
            *_user_text(photo, options),
        ]
    )
    extra = {
        "face_box": [round(float(value), 2) for value in crop_box],
        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in crop_landmarks],
        "descriptors": described,
        "pose": report.pose,
    }
    return crop, mask, None, caption, extra


def _prepare_style(
    photo: Path, rgb: np.ndarray, options: PrepareOptions, report: PhotoReport
) -> tuple[Image.Image, np.ndarray, np.ndarray, str, dict[str, Any]]:
    height, width = rgb.shape[:2]
    side = min(width, height)
    x0, y0 = (width - side) / 2.0, (height - side) / 2.0
    report.crop_side_px = side
    crop = Image.fromarray(rgb).resize(
        (options.resolution, options.resolution), Image.Resampling.LANCZOS, box=(x0, y0, x0 + side, y0 + side)
    )
    found = faces.detect_faces(rgb, upsample=options.upsample)
    report.faces = len(found)
    scale = options.resolution / side
    face_mask = np.zeros((options.resolution, options.resolution))
    first_box: list[float] | None = None
    first_landmarks: list[list[float]] | None = None
    for face in found:
        crop_landmarks = (face.landmarks - (x0, y0)) * scale
        corners = np.array(
            [[face.box.left, face.box.top], [face.box.right, face.box.bottom]], dtype=np.float64
        )
        crop_box = ((corners - (x0, y0)) * scale).reshape(-1)
        face_mask = np.maximum(
            face_mask,
            ellipse_face_mask(options.resolution, list(crop_box), crop_landmarks, Pose.from_face(face).roll),
        )
        if first_box is None:
            first_box = [round(float(value), 2) for value in crop_box]
            first_landmarks = [[round(float(x), 2), round(float(y), 2)] for x, y in crop_landmarks]
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
    return crop, face_mask, 1.0 - face_mask, caption, extra


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
    for sub in ("images", "masks", "captions"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    kind: DatasetKind = "style" if opts.style else "identity"
    entries: list[dict[str, Any]] = []
    reports: list[PhotoReport] = []
    for photo in photos:
        report = PhotoReport(source=photo.name, accepted=False)
        reports.append(report)
        try:
            rgb = faces.load_rgb(photo)
        except (UnidentifiedImageError, OSError) as error:
            report.reason = f"unreadable image: {error}"
            continue
        if opts.style:
            prepared = _prepare_style(photo, rgb, opts, report)
        else:
            prepared = _prepare_identity(photo, rgb, opts, report)  # type: ignore[assignment]
        if prepared is None:
            continue
        crop, face_mask, style_mask, caption, extra = prepared
        name = f"{len(entries) + 1:04d}"
        report.accepted, report.name = True, name
        crop.save(target / "images" / f"{name}.png")
        save_mask(np.maximum(face_mask, MASK_FLOOR), target / "masks" / f"{name}_face.png")
        entry: dict[str, Any] = {
            "name": name,
            "source": photo.name,
            "image": f"images/{name}.png",
            "face_mask": f"masks/{name}_face.png",
            "caption": f"captions/{name}.txt",
            **extra,
        }
        if style_mask is not None:
            save_mask(np.maximum(style_mask, MASK_FLOOR), target / "masks" / f"{name}_style.png")
            entry["style_mask"] = f"masks/{name}_style.png"
        (target / "captions" / f"{name}.txt").write_text(caption + "\n", encoding="utf-8")
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
        pose = " ".join(f"{key}={value:+.2f}" for key, value in report.pose.items())
        notes = "; ".join(report.warnings)
        lines.append(
            f"{report.source:<24} {report.name:<9} {report.face_size_px:>7} {report.sharpness:>6.0f} "
            f"{report.exposure_mean:>5.0f}  {pose} {notes}".rstrip()
        )
    lines.append(f"{len(result.dataset.items)} prepared, {len(result.rejected)} rejected")
    lines.append(f"dataset hash {result.dataset.hash()}")
    return "\n".join(lines)
