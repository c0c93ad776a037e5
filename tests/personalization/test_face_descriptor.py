"""The PyTorch port of dlib's face-descriptor ResNet against dlib itself, on every real face we have."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np
import pytest
import torch
from skimage import data

from personalization import faces
from personalization.face_descriptor import (
    CHIP_PADDING,
    CHIP_SIZE,
    DescriptorFormatError,
    FaceDescriptorNet,
    aligned_chips,
    chip_transform,
    load_face_descriptor,
    parse_descriptor_file,
)
from tests.personalization.conftest import FACES


@dataclass(frozen=True)
class FaceCase:
    name: str
    rgb: np.ndarray
    face: faces.Face
    chip: np.ndarray  # dlib's own 150 px aligned chip
    descriptor: np.ndarray  # dlib's own descriptor of that chip


def _shape(face: faces.Face) -> dlib.full_object_detection:
    box = face.box
    points = [dlib.point(int(x), int(y)) for x, y in face.landmarks]
    return dlib.full_object_detection(dlib.rectangle(box.left, box.top, box.right, box.bottom), points)


@pytest.fixture(scope="module")
def cases() -> list[FaceCase]:
    """Every face of every photo in ../shared/data/faces and the astronaut, with dlib's results."""
    recogniser = dlib.face_recognition_model_v1(faces.embedding_model_path())
    photos = {path.name: faces.load_rgb(path) for path in sorted(FACES.glob("*.jpg"))}
    photos["astronaut"] = data.astronaut()
    found = []
    for name, rgb in photos.items():
        for index, face in enumerate(faces.detect_faces(rgb)):
            chip = dlib.get_face_chip(rgb, _shape(face), size=CHIP_SIZE, padding=CHIP_PADDING)
            descriptor = np.asarray(recogniser.compute_face_descriptor(chip))
            found.append(FaceCase(f"{name}#{index}", rgb, face, chip, descriptor))
    assert len(found) == 8  # five single portraits, two faces in two_people.jpg, the astronaut
    return found


@pytest.fixture(scope="module")
def net() -> FaceDescriptorNet:
    return load_face_descriptor(faces.embedding_model_path(), torch.device("cpu"))


def _cosine(first: np.ndarray, second: np.ndarray) -> float:
    return float(first @ second / (np.linalg.norm(first) * np.linalg.norm(second)))


def _pixels(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float()


def test_the_port_reproduces_dlibs_descriptor_on_every_face(
    cases: list[FaceCase], net: FaceDescriptorNet
) -> None:
    with torch.no_grad():
        ported = net(torch.cat([_pixels(case.chip) for case in cases])).numpy()
    for case, descriptor in zip(cases, ported, strict=True):
        assert _cosine(descriptor, case.descriptor) >= 0.999, case.name
        # Same scale too: dlib's same-person threshold (0.6, a Euclidean distance) still applies.
        assert np.linalg.norm(descriptor - case.descriptor) < 0.01, case.name


def test_the_chip_transform_is_dlibs(cases: list[FaceCase]) -> None:
    """Same centre, size and angle as dlib's get_face_chip_details on every face: what remains
    between the two chips below is sampling, not geometry."""
    for case in cases:
        details = dlib.get_face_chip_details(_shape(case.face), CHIP_SIZE, CHIP_PADDING)
        rect = details.rect
        transform = chip_transform(case.face.landmarks)
        centre = transform @ np.array([CHIP_SIZE / 2, CHIP_SIZE / 2, 1.0])
        expected = ((rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2)
        assert np.allclose(centre, expected, atol=1e-6), case.name
        assert np.isclose(np.hypot(*transform[:, 0]) * CHIP_SIZE, rect.width(), rtol=1e-9), case.name
        assert np.isclose(np.arctan2(transform[1, 0], transform[0, 0]), details.angle, atol=1e-9), case.name


def test_the_differentiable_chip_lands_where_dlibs_does(
    cases: list[FaceCase], net: FaceDescriptorNet
) -> None:
    """The training crop (grid_sample of the whole photo) is close enough to dlib's chip that the
    descriptor barely moves (dlib samples a blurred pyramid level, hence not 0.999), and it keeps
    photos of different people apart."""
    with torch.no_grad():
        warped = [net(aligned_chips(_pixels(case.rgb), [case.face.landmarks]))[0].numpy() for case in cases]
    for case, descriptor in zip(cases, warped, strict=True):
        assert _cosine(descriptor, case.descriptor) >= 0.99, case.name
    by_name = {case.name: descriptor for case, descriptor in zip(cases, warped, strict=True)}
    assert np.linalg.norm(by_name["obama.jpg#0"] - by_name["obama2.jpg#0"]) < faces.SAME_PERSON_THRESHOLD
    assert np.linalg.norm(by_name["obama.jpg#0"] - by_name["biden.jpg#0"]) > faces.SAME_PERSON_THRESHOLD


def test_a_damaged_or_different_file_is_refused() -> None:
    weights = Path(faces.embedding_model_path()).read_bytes()
    with pytest.raises(DescriptorFormatError, match="ends early"):
        parse_descriptor_file(weights[: len(weights) // 2])
    with pytest.raises(DescriptorFormatError, match="bytes left"):
        parse_descriptor_file(weights + b"\x00")
    landmarks_model = Path(faces.embedding_model_path()).with_name("shape_predictor_5_face_landmarks.dat")
    with pytest.raises(DescriptorFormatError):
        parse_descriptor_file(landmarks_model.read_bytes())
