"""The offline face module on real photos: what "one face" and "same person" mean product-wide."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from personalization import faces
from tests.personalization.conftest import FACES


def _photo(name: str) -> np.ndarray:
    return faces.load_rgb(FACES / name)


@pytest.mark.parametrize("name", ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "biden2.jpg"])
def test_one_face_with_landmarks_inside_the_box(name: str) -> None:
    found = faces.detect_faces(_photo(name))
    assert len(found) == 1
    face = found[0]
    box = face.box
    assert face.landmarks.shape == (5, 2)
    assert np.all(face.landmarks[:, 0] >= box.left) and np.all(face.landmarks[:, 0] <= box.right)
    assert np.all(face.landmarks[:, 1] >= box.top) and np.all(face.landmarks[:, 1] <= box.bottom)
    # The eyes sit above the nose in an upright photo.
    assert face.image_left_eye[1] < face.nose[1] and face.image_right_eye[1] < face.nose[1]
    assert face.image_left_eye[0] < face.image_right_eye[0]


def test_two_people_and_the_astronaut_patch() -> None:
    assert len(faces.detect_faces(_photo("two_people.jpg"))) == 2
    # Upsampling also finds a weak "face" on the mission patch; the score floor drops it.
    assert len(faces.detect_faces(data.astronaut())) == 1
    assert len(faces.detect_faces(data.astronaut(), min_score=0.0)) == 2


def test_no_face_in_a_flat_image() -> None:
    assert faces.detect_faces(np.full((300, 300, 3), 127, dtype=np.uint8)) == []


def test_same_person_under_threshold_different_people_over() -> None:
    def embed(name: str) -> np.ndarray:
        rgb = _photo(name)
        return faces.face_embedding(rgb, faces.detect_faces(rgb)[0])

    obama, obama2, biden = embed("obama.jpg"), embed("obama2.jpg"), embed("biden.jpg")
    assert obama.shape == (128,)
    assert faces.embedding_distance(obama, obama2) < faces.SAME_PERSON_THRESHOLD
    assert faces.embedding_distance(obama, biden) > faces.SAME_PERSON_THRESHOLD


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    upright = Image.open(FACES / "obama.jpg").convert("RGB")
    sideways = upright.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": undoes the counter-clockwise rotation above
    path = tmp_path / "sideways.jpg"
    sideways.save(path, exif=exif)
    rgb = faces.load_rgb(path)
    assert rgb.shape[:2] == (upright.height, upright.width)
    assert len(faces.detect_faces(rgb)) == 1


def test_blur_lowers_sharpness_and_darkening_lowers_exposure() -> None:
    rgb = _photo("obama.jpg")
    face = faces.detect_faces(rgb)[0]
    blurred = np.asarray(Image.fromarray(rgb).resize((91, 114)).resize((rgb.shape[1], rgb.shape[0])))
    assert faces.sharpness(blurred, face) < faces.sharpness(rgb, face) / 4
    dark = (rgb // 16).astype(np.uint8)
    assert faces.exposure(dark, face).mean < faces.exposure(rgb, face).mean / 4
    assert faces.exposure(dark, face).dark_fraction > 0.5
