"""Action-descriptive captions and face-oval masks from the dense face mesh (LIPE's captions).

LIPE's ablation shows that a pose or expression a caption does not name is absorbed into the
identifier token, and cannot be asked for later. So every identity photo's caption says how
the head is turned, raised and tilted, whether the eyes are open and where they look, whether
the mouth is open and how the person smiles, and whether the eyebrows are raised.

The head pose comes from a 3D fit: the 468 mesh points are aligned to MediaPipe's canonical
face model with a weighted similarity (Procrustes) fit on the rigid points MediaPipe's own
geometry pipeline uses, so the angles do not depend on the person's face proportions the way
ratios of 5 points do. Expression measures are read in that fitted face frame (centimetres of
the canonical face), so they do not change with the photo's size or the head's pose.

Left and right are the image's: "turned to the left" means the nose points to the image's left,
so a mirrored photo swaps every left/right word (the augmentation relies on it).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from personalization import facemesh, faces
from personalization.prompts import DEFAULT_PROMPT

_CANONICAL_PATH = Path(__file__).with_name("data") / "canonical_face_model.txt"
# The rigid landmarks and weights of MediaPipe's face geometry pipeline
# (mediapipe/modules/face_geometry/data/geometry_pipeline_metadata_landmarks.pbtxt, Apache-2.0):
# points that move little with expression (eye corners, nose, forehead, cheekbones).
PROCRUSTES_WEIGHTS = {
    4: 0.070909939706326, 6: 0.032100144773722, 10: 0.008446550928056, 33: 0.058724168688059,
    54: 0.007667080033571, 67: 0.009078059345484, 117: 0.009791937656701, 119: 0.014565368182957,
    121: 0.018591361120343, 127: 0.005197994410992, 129: 0.120625205338001, 132: 0.005560018587857,
    133: 0.05328618362546, 136: 0.066890455782413, 143: 0.014816547743976, 147: 0.014262833632529,
    198: 0.025462191551924, 205: 0.047252278774977, 263: 0.058724168688059, 284: 0.007667080033571,
    297: 0.009078059345484, 346: 0.009791937656701, 348: 0.014565368182957, 350: 0.018591361120343,
    356: 0.005197994410992, 358: 0.120625205338001, 361: 0.005560018587857, 362: 0.05328618362546,
    365: 0.066890455782413, 372: 0.014816547743976, 376: 0.014262833632529, 420: 0.025462191551924,
    425: 0.047252278774977,
}  # fmt: skip
# The face outline of MediaPipe's FACEMESH_FACE_OVAL (mediapipe/python/solutions/face_mesh_connections.py),
# in order around the face from the top of the forehead.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
# The inner edge of the lips (the opening the teeth show through).
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
# An ear outline in canonical-model centimetres (x < 0: the subject's right ear), from the tragion
# next to mesh point 234 backwards and outwards: the mesh stops in front of the ears, and
# MagiCapture's face-parsing masks keep the ears (classes 1-13 of face-parsing.PyTorch, ears 7-8).
_RIGHT_EAR = np.array(
    [
        [-7.7, 3.6, -1.8],
        [-8.5, 4.3, -3.4],
        [-9.0, 3.0, -5.4],
        [-8.9, 0.2, -5.8],
        [-8.3, -2.0, -4.2],
        [-7.5, -1.8, -2.3],
    ]
)

# Calibrated bins, in degrees (measured on ../shared/data/faces and the astronaut photo; see
# tests/personalization/test_captions.py): under YAW_SLIGHT the face is towards the camera.
YAW_SLIGHT = 10.0
YAW_TURNED = 25.0
PITCH_UP = 12.0
PITCH_DOWN = -12.0
ROLL_TILT = 8.0
GAZE_AWAY = 12.0
# Expression thresholds in canonical centimetres (eye opening and mouth opening are lid-to-lid
# and lip-to-lip distances; a canonical eye is 2.6 cm corner to corner). Open eyes measured
# 0.58-1.16 here (0.58: biden2.jpg's squinting smile), the canonical face's 0.67. No photo here
# has closed eyes: the bound is an eye aspect ratio of 0.13, under the 0.2 commonly used to
# detect blinks on this mesh and well under the squint, not a measured value.
EYES_CLOSED_BELOW = 0.35
MOUTH_OPEN_ABOVE = 1.0
# A smile widens the mouth (the corners' distance over the canonical face's 4.9 cm: closed-mouth
# smiles measured 1.24-1.25, broad smiles 1.42-1.49, neutral and speaking mouths 1.16-1.19) and
# does not pull the corners below the upper lip (speaking: -0.43 cm against the canonical face).
SMILE_WIDTH_ABOVE = 1.22
SMILE_CORNER_DROP_BELOW = -0.2
TEETH_FRACTION_ABOVE = 0.25
BROWS_RAISED_ABOVE = 3.0
# The iris centre sits on the eyeball, about 1.2 cm from its centre of rotation; an eye is about
# 2.6 cm corner to corner, so an iris offset of t eye-widths turns the eye by asin(t * 2.6 / 1.2).
_EYE_WIDTH_OVER_RADIUS = 2.6 / 1.2


@functools.cache
def canonical_face() -> np.ndarray:
    """MediaPipe's canonical face mesh (468 x 3, cm; x to the image's right for a frontal face, y up)."""
    points = np.loadtxt(_CANONICAL_PATH, dtype=np.float64)
    if points.shape != (468, 3):
        raise faces.FaceModelsUnavailableError(f"{_CANONICAL_PATH} is not a 468-point face model")
    return points


@dataclass(frozen=True)
class Fit:
    """observed = scale * rotation @ canonical + offset; camera frame: x right, y up, z to the viewer."""

    rotation: np.ndarray
    scale: float
    offset: np.ndarray

    def project(self, canonical_points: np.ndarray) -> np.ndarray:
        """Image pixels (x, y down) of points given in canonical-model coordinates."""
        camera = self.scale * canonical_points @ self.rotation.T + self.offset
        return np.stack([camera[:, 0], -camera[:, 1]], axis=1)

    def to_face_frame(self, camera_points: np.ndarray) -> np.ndarray:
        return ((camera_points - self.offset) @ self.rotation) / self.scale


def _camera_frame(points: np.ndarray) -> np.ndarray:
    """Mesh points (x right, y down, z away from the viewer) in a right-handed frame with y up."""
    return np.stack([points[:, 0], -points[:, 1], -points[:, 2]], axis=1)


def fit_canonical(points: np.ndarray) -> Fit:
    """Weighted similarity fit of the mesh to the canonical face (Umeyama's closed form)."""
    indices = np.array(sorted(PROCRUSTES_WEIGHTS))
    weights = np.array([PROCRUSTES_WEIGHTS[index] for index in indices])
    weights = weights / weights.sum()
    source = canonical_face()[indices]
    target = _camera_frame(points)[indices]
    source_mean, target_mean = weights @ source, weights @ target
    source_c, target_c = source - source_mean, target - target_mean
    covariance = (target_c * weights[:, None]).T @ source_c
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, 1.0, float(np.sign(np.linalg.det(u @ vt)))])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(singular) @ sign) / (weights @ (source_c**2).sum(axis=1)))
    return Fit(rotation=rotation, scale=scale, offset=target_mean - scale * rotation @ source_mean)


@dataclass(frozen=True)
class HeadPose:
    """Degrees. yaw > 0: the nose points to the image's right; pitch > 0: the face looks up;
    roll > 0: the top of the head leans to the image's right."""

    yaw: float
    pitch: float
    roll: float

    @classmethod
    def from_rotation(cls, rotation: np.ndarray) -> HeadPose:
        """Angles of rotation = yaw (about y) @ pitch (about x) @ roll (about the face's own axis):
        yaw and pitch say where the face points, roll how it leans around that direction."""
        forward = rotation[:, 2]
        yaw = math.atan2(forward[0], forward[2])
        pitch = math.atan2(forward[1], math.hypot(forward[0], forward[2]))
        cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
        pointing = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]]) @ np.array(
            [[1.0, 0.0, 0.0], [0.0, cp, sp], [0.0, -sp, cp]]
        )
        up = pointing.T @ rotation[:, 1]
        roll = math.atan2(up[0], up[1])
        return cls(yaw=math.degrees(yaw), pitch=math.degrees(pitch), roll=math.degrees(roll))


@dataclass(frozen=True)
class FaceDescription:
    """What the caption says about one face, with the measures behind each word."""

    pose: HeadPose
    gaze_yaw: float  # degrees, where the eyes look (head yaw plus the eyes' turn); > 0: image right
    eye_opening: float  # cm between the lids, mean of both eyes
    mouth_opening: float  # cm between the inner lips
    mouth_width: float  # the mouth corners' distance over the canonical face's
    corner_lift: float  # cm the mouth corners sit above the canonical face's, measured from the upper lip
    teeth_fraction: float  # share of bright, unsaturated pixels inside the lips
    brow_height: float  # cm from the eye corners' line to the middle of the brows
    fit: Fit
    points: np.ndarray  # the mesh, image pixels
    confidence: float  # the mesh model's face score: under facemesh.MIN_CONFIDENCE nothing here is a face

    @property
    def is_face(self) -> bool:
        return self.confidence >= facemesh.MIN_CONFIDENCE

    @property
    def eyes_closed(self) -> bool:
        return self.eye_opening < EYES_CLOSED_BELOW

    @property
    def mouth_open(self) -> bool:
        return self.mouth_opening > MOUTH_OPEN_ABOVE

    @property
    def smile(self) -> str:
        """none, closed (a closed-mouth smile) or teeth."""
        if self.mouth_width <= SMILE_WIDTH_ABOVE or self.corner_lift < SMILE_CORNER_DROP_BELOW:
            return "none"
        return "teeth" if self.teeth_fraction > TEETH_FRACTION_ABOVE else "closed"

    def descriptors(self, *, include_roll: bool = True) -> list[str]:
        words: list[str] = []
        yaw, pitch, roll = self.pose.yaw, self.pose.pitch, self.pose.roll
        side = "right" if yaw > 0 else "left"
        if abs(yaw) >= YAW_TURNED:
            words.append(f"head turned to the {side}")
        elif abs(yaw) >= YAW_SLIGHT:
            words.append(f"head turned slightly to the {side}")
        else:
            words.append("facing the camera")
        if pitch >= PITCH_UP:
            words.append("head raised, chin up")
        elif pitch <= PITCH_DOWN:
            words.append("head lowered, chin down")
        if include_roll and abs(roll) >= ROLL_TILT:
            words.append(f"head tilted to the {'right' if roll > 0 else 'left'}")
        if self.eyes_closed:
            words.append("eyes closed")
        else:
            words.append("eyes open")
            if abs(self.gaze_yaw) < GAZE_AWAY:
                words.append("looking at the camera")
            else:
                words.append(f"looking to the {'right' if self.gaze_yaw > 0 else 'left'}")
        smile = self.smile
        if smile == "teeth":
            words.append("smiling with teeth")
        elif smile == "closed":
            words.append("smiling, mouth open" if self.mouth_open else "smiling with mouth closed")
        elif self.mouth_open:
            words.append("mouth open")
        else:
            words.append("neutral expression, mouth closed")
        if self.brow_height > BROWS_RAISED_ABOVE:
            words.append("eyebrows raised")
        return words

    def measures(self) -> dict[str, float]:
        """The numbers behind the words, for the quality report (rounded)."""
        return {
            "yaw": round(self.pose.yaw, 1),
            "pitch": round(self.pose.pitch, 1),
            "roll": round(self.pose.roll, 1),
            "gaze_yaw": round(self.gaze_yaw, 1),
            "eye_opening": round(self.eye_opening, 3),
            "mouth_opening": round(self.mouth_opening, 3),
            "mouth_width": round(self.mouth_width, 3),
            "corner_lift": round(self.corner_lift, 3),
            "teeth_fraction": round(self.teeth_fraction, 3),
            "brow_height": round(self.brow_height, 3),
        }


def _eye_turn(points: np.ndarray, iris: np.ndarray, corners: tuple[int, int]) -> float:
    """Degrees the eye is turned from the middle of its corners (> 0: towards the image's right)."""
    start, end = points[corners[0], :2], points[corners[1], :2]
    axis = end - start
    if start[0] > end[0]:
        axis = -axis
    width = float(np.linalg.norm(axis))
    offset = float((iris - (start + end) / 2.0) @ axis) / (width * width)
    return math.degrees(math.asin(float(np.clip(offset * _EYE_WIDTH_OVER_RADIUS, -1.0, 1.0))))


def _teeth_fraction(rgb: np.ndarray, points: np.ndarray) -> float:
    """Share of the lips' opening that is bright and unsaturated (teeth), 0 when the lips touch."""
    polygon = points[list(INNER_LIPS), :2]
    low = np.floor(polygon.min(axis=0)).astype(int)
    high = np.ceil(polygon.max(axis=0)).astype(int) + 1
    low = np.maximum(low, 0)
    high = np.minimum(high, [rgb.shape[1], rgb.shape[0]])
    if np.any(high - low < 2):
        return 0.0
    canvas = Image.new("L", (int(high[0] - low[0]), int(high[1] - low[1])), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in (polygon - low)], fill=1)
    inside = np.asarray(canvas, dtype=bool)
    if inside.sum() < 4:
        return 0.0
    patch = rgb[low[1] : high[1], low[0] : high[0]].astype(np.float64)[inside]
    brightest, darkest = patch.max(axis=1), patch.min(axis=1)
    saturation = (brightest - darkest) / np.maximum(brightest, 1.0)
    # Relative to the face's own brightness, so a dark photo's teeth still count.
    face_level = float(np.median(rgb[low[1] : high[1], low[0] : high[0]].max(axis=2)))
    teeth = (brightest > max(90.0, 1.05 * face_level)) & (saturation < 0.35)
    return float(teeth.mean())


def describe_face(rgb: np.ndarray, face: faces.Face) -> FaceDescription:
    """Runs the mesh on one detected face and measures pose, eyes, gaze, mouth, smile and brows."""
    mesh = facemesh.dense_landmarks(rgb, face)
    fit = fit_canonical(mesh.points)
    local = fit.to_face_frame(_camera_frame(mesh.points))
    pose = HeadPose.from_rotation(fit.rotation)
    eye_opening = float(
        (np.linalg.norm(local[159] - local[145]) + np.linalg.norm(local[386] - local[374])) / 2.0
    )
    mouth_opening = float(np.linalg.norm(local[13] - local[14]))
    canonical = canonical_face()
    corners = (local[61, 1] + local[291, 1]) / 2.0
    corner_lift = float((corners - local[13, 1]) - (canonical[61, 1] - canonical[13, 1]))
    mouth_width = float(
        np.linalg.norm(local[61, :2] - local[291, :2]) / np.linalg.norm(canonical[61] - canonical[291])
    )
    eye_line = (local[33, 1] + local[133, 1] + local[263, 1] + local[362, 1]) / 4.0
    brow_height = float((local[105, 1] + local[334, 1]) / 2.0 - eye_line)
    eyes = (
        _eye_turn(mesh.points, mesh.iris_image_left, facemesh.IMAGE_LEFT_EYE_CORNERS)
        + _eye_turn(mesh.points, mesh.iris_image_right, facemesh.IMAGE_RIGHT_EYE_CORNERS)
    ) / 2.0
    return FaceDescription(
        pose=pose,
        gaze_yaw=pose.yaw + eyes,
        eye_opening=eye_opening,
        mouth_opening=mouth_opening,
        mouth_width=mouth_width,
        corner_lift=corner_lift,
        teeth_fraction=_teeth_fraction(rgb, mesh.points),
        brow_height=brow_height,
        fit=fit,
        points=mesh.points,
        confidence=mesh.confidence,
    )


def face_outline(description: FaceDescription) -> list[np.ndarray]:
    """The polygons (image pixels) the face mask fills: the mesh's face oval, and each ear that
    faces the camera (an ear turned away is hidden behind the head)."""
    polygons = [description.points[list(FACE_OVAL), :2]]
    for side in (1.0, -1.0):
        outward = description.fit.rotation @ np.array([-side, 0.0, 0.0])
        if outward[2] > -0.3:
            ear = _RIGHT_EAR * np.array([side, 1.0, 1.0])
            polygons.append(description.fit.project(ear))
    return polygons


def face_oval_mask(size: int, polygons: list[np.ndarray], feather_px: float | None = None) -> np.ndarray:
    """A soft mask (1 inside, 0 outside, before the floor) of the face polygons on a size x size canvas.

    The edge ramps inwards only, so no background or hair beyond the outline gets weight; the ramp
    is 2% of the face's width unless given.
    """
    from scipy import ndimage  # only where masks are drawn: the web process imports this module

    supersample = 4
    canvas = Image.new("L", (size * supersample, size * supersample), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        draw.polygon([(float(x) * supersample, float(y) * supersample) for x, y in polygon], fill=255)
    coverage = np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float64) / 255.0
    if not coverage.any():
        return coverage
    width = float(np.ptp(polygons[0][:, 0]))
    ramp = feather_px if feather_px is not None else max(1.0, 0.02 * width)
    inside = ndimage.distance_transform_edt(coverage >= 0.5)
    edge = np.clip(np.asarray(inside, dtype=np.float64) / ramp, 0.0, 1.0)
    return np.minimum(coverage, edge * edge * (3.0 - 2.0 * edge))


def photo_prompt(rgb: np.ndarray) -> str:
    """A photo's own caption as a prompt template: what an edit's source prompt defaults to.

    LIPE inverts the photo with a prompt that describes it; "a photo of <sks> person" leaves the
    smile or the turned head undescribed, so the inversion attributes them to the identifier and
    the target prompt fights them. The words are prepare's for the largest face; a photo where no
    face is found (by dlib, then by the mesh) gets the plain DEFAULT_PROMPT.
    """
    found = faces.detect_faces(rgb)
    described = describe_face(rgb, found[0]) if found else None
    if described is None or not described.is_face:
        return DEFAULT_PROMPT
    return ", ".join([DEFAULT_PROMPT, *described.descriptors()])
