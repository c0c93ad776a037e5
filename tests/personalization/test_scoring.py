"""Scoring on real photos (../shared/data/faces): identity, background preservation, CLIP availability."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from personalization import faces, scoring

FACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"


@pytest.fixture(scope="module")
def obama_references() -> list[np.ndarray]:
    return scoring.reference_embeddings([FACES / "obama.jpg", FACES / "obama2.jpg"])


def test_same_person_scores_under_the_threshold(obama_references: list[np.ndarray]) -> None:
    score = scoring.identity_score(FACES / "obama3.jpg", obama_references)
    assert score.outcome == "match" and score.passed
    assert score.best_distance is not None and score.mean_distance is not None
    assert score.best_distance < faces.SAME_PERSON_THRESHOLD
    assert score.best_distance <= score.mean_distance
    assert score.references == 2 and score.faces_in_output == 1


@pytest.mark.parametrize("other", ["biden.jpg", "biden2.jpg"])
def test_a_different_person_scores_over_the_threshold(obama_references: list[np.ndarray], other: str) -> None:
    score = scoring.identity_score(FACES / other, obama_references)
    assert score.outcome == "mismatch" and not score.passed
    assert score.best_distance is not None and score.best_distance > faces.SAME_PERSON_THRESHOLD


def test_an_image_without_a_face_reports_no_face(obama_references: list[np.ndarray]) -> None:
    flat = np.full((256, 256, 3), 127, dtype=np.uint8)
    score = scoring.identity_score(flat, obama_references)
    assert score.outcome == "no_face" and not score.passed
    assert score.best_distance is None and score.mean_distance is None and score.faces_in_output == 0


def test_a_reference_without_a_face_is_an_error() -> None:
    flat = np.full((128, 128, 3), 30, dtype=np.uint8)
    with pytest.raises(scoring.ScoringError, match="no face found in reference #2"):
        scoring.reference_embeddings([FACES / "obama.jpg", flat])
    with pytest.raises(scoring.ScoringError, match="at least one reference"):
        scoring.reference_embeddings([])


def _photo() -> np.ndarray:
    return faces.load_rgb(FACES / "biden.jpg")


def test_background_untouched_outside_the_region() -> None:
    original = _photo()
    edited = original.copy()
    region = np.zeros(original.shape[:2], dtype=bool)
    region[50:150, 60:200] = True
    edited[region] = 255 - edited[region]
    score = scoring.background_score(original, edited, region)
    assert score.outside_pixels == int((~region).sum())
    assert score.identical_pixels == score.outside_pixels and score.identical_fraction == 1.0
    assert math.isinf(score.psnr)
    assert score.ssim == pytest.approx(1.0)
    assert scoring.as_dict(score)["psnr"] == "inf"


def test_background_changes_outside_the_region_are_counted() -> None:
    original = _photo()
    region = np.zeros(original.shape[:2], dtype=bool)
    region[:100, :] = True
    edited = original.copy()
    edited[200:210, :] = np.clip(edited[200:210, :].astype(int) + 40, 0, 255).astype(np.uint8)
    changed_rows = int((edited[200:210] != original[200:210]).any(axis=2).sum())
    score = scoring.background_score(original, edited, region)
    assert score.identical_pixels == score.outside_pixels - changed_rows
    assert 20.0 < score.psnr < 60.0
    assert 0.0 < score.ssim < 1.0
    noisy = np.clip(original.astype(int) + np.random.default_rng(0).integers(-60, 60, original.shape), 0, 255)
    worse = scoring.background_score(original, noisy.astype(np.uint8), region)
    assert worse.psnr < score.psnr and worse.ssim < score.ssim


def test_background_bad_input_is_refused() -> None:
    original = _photo()
    region = np.zeros(original.shape[:2], dtype=bool)
    with pytest.raises(scoring.ScoringError, match="differ in size"):
        scoring.background_score(original, original[:-1], region)
    with pytest.raises(scoring.ScoringError, match="does not match"):
        scoring.background_score(original, original, region[:-1])
    with pytest.raises(scoring.ScoringError, match="whole image"):
        scoring.background_score(original, original, ~region)


def test_region_from_a_saved_mask_image(tmp_path: Path) -> None:
    weights = np.zeros((20, 30), dtype=np.uint8)
    weights[5:10, 5:10] = 1  # the faintest feathered pixel still belongs to the region
    path = tmp_path / "region.png"
    Image.fromarray(weights, mode="L").save(path)
    region = scoring.region_from_mask_image(path)
    assert region.shape == (20, 30) and int(region.sum()) == 25


def test_clip_score_without_a_model_is_unavailable() -> None:
    score = scoring.clip_score(_photo(), "a photo of a person", None)
    assert score.available is False and score.value is None and score.reason == "no CLIP model configured"


def test_clip_score_with_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(scoring.ScoringError, match="does not exist"):
        scoring.clip_score(_photo(), "a photo of a person", tmp_path / "nothing-here")
