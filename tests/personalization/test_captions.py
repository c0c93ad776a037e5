"""Captions and face masks from MediaPipe's face mesh, on real photos checked by eye.

What each photo shows (looked at, not measured): obama.jpg, biden2.jpg and the astronaut smile
broadly with their teeth showing; obama2.jpg speaks with the mouth open, no smile, head and eyes
turned to the image's left; biden.jpg has a closed, neutral mouth and the head tilted to the
image's right; in two_people.jpg Obama smiles with the mouth closed and Biden does not smile.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from skimage import data as skdata

from personalization import captions, facemesh, faces
from tests.personalization.conftest import FACES


def _describe(rgb: np.ndarray, index: int = 0) -> captions.FaceDescription:
    return captions.describe_face(rgb, faces.detect_faces(rgb)[index])


@pytest.fixture(scope="module")
def described() -> dict[str, captions.FaceDescription]:
    out = {
        name: _describe(faces.load_rgb(FACES / name))
        for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "biden2.jpg")
    }
    out["astronaut"] = _describe(skdata.astronaut())
    two = faces.load_rgb(FACES / "two_people.jpg")
    # detect_faces returns the largest face first: Biden's (on the right of the photo).
    out["two_people biden"], out["two_people obama"] = _describe(two, 0), _describe(two, 1)
    return out


@pytest.mark.parametrize("name", ["obama.jpg", "biden2.jpg", "astronaut"])
def test_broad_smiles_are_smiling_with_teeth(described, name: str) -> None:
    words = described[name].descriptors()
    assert "smiling with teeth" in words, words
    assert "facing the camera" in words and "eyes open" in words and "looking at the camera" in words


def test_open_mouth_without_smile_and_gaze_to_the_side(described) -> None:
    words = described["obama2.jpg"].descriptors()
    assert "mouth open" in words, words
    assert not any("smil" in word for word in words)
    assert "head turned slightly to the left" in words
    assert "looking to the left" in words


def test_closed_mouths_neutral_or_closed_smile(described) -> None:
    assert "neutral expression, mouth closed" in described["biden.jpg"].descriptors()
    assert "neutral expression, mouth closed" in described["two_people biden"].descriptors()
    assert "smiling with mouth closed" in described["two_people obama"].descriptors()
    assert "head tilted to the right" in described["biden.jpg"].descriptors()
    assert "head tilted to the right" not in described["biden.jpg"].descriptors(include_roll=False)


def test_no_one_here_has_closed_eyes_or_raised_brows(described) -> None:
    for name, description in described.items():
        words = description.descriptors()
        assert "eyes open" in words and "eyebrows raised" not in words, (name, words)


def _mirrored(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, ::-1])


def test_mirrored_photo_swaps_left_and_right() -> None:
    rgb = faces.load_rgb(FACES / "obama2.jpg")
    plain = _describe(rgb).descriptors()
    mirrored = _describe(_mirrored(rgb)).descriptors()
    swap = {"left": "right", "right": "left"}
    assert "head turned slightly to the left" in plain and "looking to the left" in plain
    assert mirrored == [" ".join(swap.get(word, word) for word in phrase.split(" ")) for phrase in plain]


def test_mirrored_photo_swaps_the_tilt() -> None:
    rgb = faces.load_rgb(FACES / "biden.jpg")
    plain, mirrored = _describe(rgb), _describe(_mirrored(rgb))
    assert plain.pose.roll == pytest.approx(-mirrored.pose.roll, abs=2.0)
    assert "head tilted to the right" in plain.descriptors()
    assert "head tilted to the left" in mirrored.descriptors()


@pytest.mark.parametrize(("yaw", "pitch", "roll"), [(0, 0, 0), (30, 0, 0), (-18, 12, 0), (5, -15, 10)])
def test_fit_recovers_a_known_rotation(yaw: float, pitch: float, roll: float) -> None:
    """The canonical face turned by known angles and drawn as the mesh model reports points
    (x right, y down, z away from the camera) gives those angles back, with their signs."""
    a, b, c = (math.radians(v) for v in (yaw, pitch, roll))
    turn_yaw = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    turn_pitch = np.array([[1, 0, 0], [0, math.cos(b), math.sin(b)], [0, -math.sin(b), math.cos(b)]])
    turn_roll = np.array([[math.cos(c), math.sin(c), 0], [-math.sin(c), math.cos(c), 0], [0, 0, 1]])
    camera = 20.0 * captions.canonical_face() @ (turn_yaw @ turn_pitch @ turn_roll).T + [300.0, -200.0, 0.0]
    mesh = np.stack([camera[:, 0], -camera[:, 1], -camera[:, 2]], axis=1)
    pose = captions.HeadPose.from_rotation(captions.fit_canonical(mesh).rotation)
    assert pose.yaw == pytest.approx(yaw, abs=0.5)
    assert pose.pitch == pytest.approx(pitch, abs=0.5)
    assert pose.roll == pytest.approx(roll, abs=0.5)


def test_face_oval_mask_leaves_out_hair_and_background(described) -> None:
    description = described["obama.jpg"]
    rgb = faces.load_rgb(FACES / "obama.jpg")
    height, width = rgb.shape[:2]
    size = max(height, width)
    mask = captions.face_oval_mask(size, captions.face_outline(description))
    points = description.points[:, :2]
    face_height = float(points[152, 1] - points[10, 1])

    def at(xy: np.ndarray) -> float:
        return float(mask[int(xy[1]), int(xy[0])])

    assert at(points[1]) == 1.0 and at(points[159]) == 1.0 and at(points[14]) == 1.0
    # Hair above the forehead and the background beside the temples are outside the mask.
    assert at(points[10] - [0, 0.08 * face_height]) == 0.0
    for temple, outward in ((54, -1), (284, 1)):
        assert at(points[temple] + [outward * 0.1 * face_height, 0]) == 0.0
    # The ears (level with the nose, beside the cheeks) are inside: MagiCapture's parsing keeps them.
    for cheek, outward in ((234, -1), (454, 1)):
        assert at(points[cheek] + [outward * 0.04 * face_height, 0]) > 0.5
    assert at(points[152] + [0, 0.08 * face_height]) == 0.0  # the neck


def test_mirrored_photo_mirrors_the_mask() -> None:
    rgb = faces.load_rgb(FACES / "obama2.jpg")
    size = max(rgb.shape[:2])
    plain = captions.face_oval_mask(size, captions.face_outline(_describe(rgb)))
    mirrored = captions.face_oval_mask(size, captions.face_outline(_describe(_mirrored(rgb))))
    # The canvas is square and the photo sits at its left: mirror within the photo's width.
    width = rgb.shape[1]
    expected = np.zeros_like(plain)
    expected[:, :width] = plain[:, :width][:, ::-1]
    overlap = np.minimum(expected, mirrored).sum() / np.maximum(expected, mirrored).sum()
    assert overlap > 0.85  # the mesh is not exactly mirror-symmetric at the ears


def test_missing_models_say_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIKENESS_FACE_MESH_DIR", str(tmp_path))
    rgb = faces.load_rgb(FACES / "obama.jpg")
    with pytest.raises(faces.FaceModelsUnavailableError, match="fetch-face-mesh"):
        _describe(rgb)


def test_installed_models_are_verified_and_an_altered_one_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = facemesh.default_models_dir()
    for name in facemesh.MODEL_FILES:
        shutil.copy(source / name, tmp_path / name)
    assert facemesh.install_models(tmp_path) == []  # nothing to download
    (tmp_path / "iris_landmark.tflite").write_bytes(b"not the model")
    assert facemesh.missing_models(tmp_path) == ["iris_landmark.tflite"]
    monkeypatch.setenv("LIKENESS_FACE_MESH_DIR", str(tmp_path))
    with pytest.raises(faces.FaceModelsUnavailableError, match="sha256 differs"):
        _describe(faces.load_rgb(FACES / "obama.jpg"))


def test_a_box_without_a_face_is_not_described_as_one(described) -> None:
    """The mesh model's own face score rejects what the detector wrongly boxed (background here)."""
    rgb = skdata.astronaut()
    left, top, right, bottom = 20, 350, 120, 450
    corners = [[0.7, 0.4], [0.6, 0.4], [0.3, 0.4], [0.4, 0.4], [0.5, 0.7]]
    landmarks = np.array([[left + x * (right - left), top + y * (bottom - top)] for x, y in corners])
    nothing = captions.describe_face(rgb, faces.Face(faces.FaceBox(left, top, right, bottom, 1.0), landmarks))
    assert not nothing.is_face
    assert all(description.is_face for description in described.values())
