"""Data preparation on real photos: the shared face set and scikit-image's astronaut."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from personalization.dataset import MASK_FLOOR, DatasetError, PreparedDataset, load_mask_tensor
from personalization.prepare import PrepareError, PrepareOptions, load_captioner, prepare
from tests.personalization.conftest import FACES

RESOLUTION = 64


class FixedCaptioner:
    """A captioner plugged in through the import-path interface (stands in for a VLM)."""

    def describe(self, image: Image.Image) -> str:
        return f"wearing a suit, {image.width}px"


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "two_people.jpg"):
        shutil.copy(FACES / name, folder / name)
    Image.fromarray(skdata.astronaut()).save(folder / "astronaut.png")
    (folder / "obama.txt").write_text("at a press conference")
    (folder / "notes.md").write_text("not a photo")
    return folder


@pytest.fixture(scope="module")
def prepared(photos: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("prepared")
    return prepare(photos, out, PrepareOptions(resolution=RESOLUTION, caption="indoors"))


def _entries(result) -> dict[str, dict]:
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    return {entry["source"]: entry for entry in manifest["images"]}


def test_one_face_each_and_two_people_rejected(prepared) -> None:
    accepted = {report.source for report in prepared.reports if report.accepted}
    assert accepted == {"obama.jpg", "obama2.jpg", "obama3.jpg"}
    assert all(report.faces == 1 for report in prepared.reports if report.accepted)
    reasons = {report.source: report.reason for report in prepared.rejected}
    assert reasons["two_people.jpg"] == "2 faces found; an identity photo must show exactly one person"
    manifest = json.loads((prepared.out_dir / "manifest.json").read_text())
    assert manifest["rejected"] == [
        {"source": source, "reason": reason} for source, reason in sorted(reasons.items())
    ]


def test_a_different_person_is_left_out_with_the_distance(prepared) -> None:
    """Three photos of Obama, one of Biden, one of the astronaut: the two others are not the subject."""
    reports = {report.source: report for report in prepared.reports}
    for other in ("biden.jpg", "astronaut.png"):
        assert reports[other].accepted is False
        assert reports[other].reason.startswith("a different person from the rest of the set (face distance")
        assert reports[other].pose["identity_distance"] > 0.6
    for same in ("obama.jpg", "obama2.jpg", "obama3.jpg"):
        assert reports[same].pose["identity_distance"] < 0.6


def test_a_set_with_no_majority_person_is_refused(photos: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("obama.jpg", "biden.jpg"):
        shutil.copy(photos / name, folder / name)
    with pytest.raises(PrepareError, match="these photos show different people"):
        prepare(folder, tmp_path / "out", PrepareOptions(resolution=RESOLUTION))
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_crop_contains_landmarks_and_mask_covers_them(prepared) -> None:
    for source, entry in _entries(prepared).items():
        image = Image.open(prepared.out_dir / entry["image"])
        assert image.size == (RESOLUTION, RESOLUTION), source
        landmarks = np.array(entry["landmarks"])
        assert landmarks.shape == (5, 2)
        assert (landmarks >= 0).all() and (landmarks < RESOLUTION).all(), source
        mask = load_mask_tensor(prepared.out_dir / entry["face_mask"])[0].numpy()
        for x, y in landmarks:
            assert mask[int(y), int(x)] > 0.9, (source, x, y)
        assert mask.min() >= MASK_FLOOR
        assert mask.min() < 0.02  # the floor is reached away from the face: the mask is local
        assert 0.05 < float((mask > 0.5).mean()) < 0.6, source


def test_captions_carry_token_pose_and_user_text(prepared) -> None:
    entries = _entries(prepared)
    obama = (prepared.out_dir / entries["obama.jpg"]["caption"]).read_text().strip()
    assert obama.startswith("a photo of <sks> person, ")
    assert "facing the camera" in obama and "smiling with teeth" in obama
    assert obama.endswith("at a press conference, indoors")
    obama2 = (prepared.out_dir / entries["obama2.jpg"]["caption"]).read_text()
    assert "head turned slightly to the left" in obama2 and "mouth open" in obama2
    for entry in entries.values():
        assert entry["descriptors"], entry["source"]


def test_flipped_photo_flips_yaw_descriptor(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    original = Image.open(FACES / "obama2.jpg")
    original.save(folder / "a.png")
    original.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "b_flipped.png")
    result = prepare(folder, tmp_path / "out", PrepareOptions(resolution=RESOLUTION))
    entries = _entries(result)
    plain, flipped = entries["a.png"], entries["b_flipped.png"]
    assert plain["pose"]["yaw"] < 0 < flipped["pose"]["yaw"]
    assert "head turned slightly to the left" in plain["descriptors"]
    assert "head turned slightly to the right" in flipped["descriptors"]


def test_quality_report_and_dataset_hash(prepared, tmp_path: Path) -> None:
    quality = json.loads((prepared.out_dir / "quality.json").read_text())
    by_source = {row["source"]: row for row in quality}
    astronaut = by_source["astronaut.png"]
    assert astronaut["face_size_px"] > 50
    assert {"yaw", "pitch", "roll", "mouth_width", "identity_distance"} <= set(astronaut["pose"])
    assert any("blurry" in warning for warning in astronaut["warnings"])
    assert by_source["obama.jpg"]["sharpness"] > by_source["astronaut.png"]["sharpness"]
    assert by_source["two_people.jpg"]["accepted"] is False

    manifest = json.loads((prepared.out_dir / "manifest.json").read_text())
    copy = tmp_path / "copy"
    shutil.copytree(prepared.out_dir, copy)
    assert PreparedDataset.load(copy).hash() == manifest["dataset_hash"]
    caption = copy / "captions" / "0001.txt"
    caption.write_text(caption.read_text().replace("person", "person, smiling"))
    assert PreparedDataset.load(copy).hash() != manifest["dataset_hash"]
    caption.write_text("a photo of a man")
    with pytest.raises(DatasetError, match="does not contain the token <sks>"):
        PreparedDataset.load(copy)


def test_style_photos_get_face_mask_complement(photos: Path, tmp_path: Path) -> None:
    folder = tmp_path / "style"
    folder.mkdir()
    shutil.copy(photos / "two_people.jpg", folder / "two_people.jpg")
    shutil.copy(photos / "obama.jpg", folder / "obama.jpg")
    result = prepare(folder, tmp_path / "out", PrepareOptions(resolution=RESOLUTION, style=True))
    dataset = result.dataset
    assert dataset.kind == "style" and dataset.token == "<style1>"
    assert len(dataset.items) == 2
    for item in dataset.items:
        assert item.style_mask is not None
        face = load_mask_tensor(item.face_mask)
        style = load_mask_tensor(item.style_mask)
        inside = face > 0.5
        assert (style[inside] < 0.5).all() and (style[~inside] > 0.5).all()
        assert item.caption().startswith("a photo of a person in the <style1> style")


def test_captioner_plugin_text_is_merged(photos: Path, tmp_path: Path) -> None:
    captioner = load_captioner("tests.personalization.test_prepare:FixedCaptioner")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos / "obama.jpg", folder / "obama.jpg")
    result = prepare(folder, tmp_path / "out", PrepareOptions(resolution=RESOLUTION, captioner=captioner))
    assert "wearing a suit, 64px" in result.dataset.items[0].caption()
    with pytest.raises(PrepareError, match=r"package\.module:factory"):
        load_captioner("no_colon")
    with pytest.raises(PrepareError, match="cannot load captioner"):
        load_captioner("tests.personalization.test_prepare:Missing")


def test_bad_inputs_fail_clearly_and_lose_nothing(photos: Path, prepared, tmp_path: Path, cli) -> None:
    with pytest.raises(PrepareError, match="already holds a prepared set"):
        prepare(photos, prepared.out_dir, PrepareOptions(resolution=RESOLUTION))
    assert PreparedDataset.load(prepared.out_dir).hash() == prepared.dataset.hash()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PrepareError, match="has no photos"):
        prepare(empty, tmp_path / "o1")
    only_two = tmp_path / "two"
    only_two.mkdir()
    shutil.copy(photos / "two_people.jpg", only_two / "two_people.jpg")
    (only_two / "broken.jpg").write_bytes(b"not a jpeg")
    done = cli(
        "prepare", "--images", str(only_two), "--out", str(tmp_path / "o2"), "--resolution", str(RESOLUTION)
    )
    assert done.returncode == 2
    assert "two_people.jpg: 2 faces found" in done.stderr
    assert "broken.jpg: unreadable image" in done.stderr


def test_level_eyes_turns_the_head_upright_and_drops_the_tilt(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(FACES / "biden.jpg", folder / "biden.jpg")  # the head leans about 10 degrees
    result = prepare(folder, tmp_path / "out", PrepareOptions(resolution=RESOLUTION, level_eyes=True))
    (entry,) = _entries(result).values()
    assert not any("tilted" in words for words in entry["descriptors"])
    points = np.array(entry["landmarks"])
    right, left = points[0:2].mean(axis=0), points[2:4].mean(axis=0)
    assert abs(float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))) < 3.0
