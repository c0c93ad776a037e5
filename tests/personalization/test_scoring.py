"""Scoring on real photos (../shared/data/faces): identity, background preservation, CLIP availability."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from personalization import faces, scoring
from tests.personalization.conftest import FACES


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


@pytest.mark.parametrize("person", [("obama.jpg", "obama2.jpg"), ("biden.jpg", "biden2.jpg")], ids=["A", "B"])
def test_a_group_photo_matches_whichever_of_its_faces_is_the_subject(person: tuple[str, str]) -> None:
    """Every face is compared and the best one reported: the subject's own face in a group photo is a
    match even when someone else's face is the larger one (issue 13)."""
    references = scoring.reference_embeddings([FACES / name for name in person])
    score = scoring.identity_score(FACES / "two_people.jpg", references)
    assert score.faces_in_output == 2
    assert score.outcome == "match", score
    assert score.best_distance is not None and score.best_distance < faces.SAME_PERSON_THRESHOLD


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


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight CLIP saved with save_pretrained: the scoring path of a real CLIP folder."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    # The text tower is the tiny model's own text encoder configuration (tiny.py).
    from personalization.tiny import END_OF_TEXT, START_OF_TEXT, _text_config, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    start, end = (tokenizer.convert_tokens_to_ids(token) for token in (START_OF_TEXT, END_OF_TEXT))
    text = _text_config(len(tokenizer), start, end).to_dict()
    vision = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    folder = tmp_path_factory.mktemp("clip") / "tiny-clip"
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_clip_score_with_a_configured_model(tiny_clip: Path) -> None:
    photo = _photo()
    first = scoring.clip_score(photo, "a photo of a person", tiny_clip)
    assert first.available and first.model == str(tiny_clip) and first.reason is None
    assert first.value is not None and first.cosine is not None and -1.0 <= first.cosine <= 1.0
    assert first.value == pytest.approx(100.0 * max(first.cosine, 0.0))
    assert scoring.clip_score(photo, "a photo of a person", tiny_clip) == first
    cosines = {
        scoring.clip_score(photo, text, tiny_clip).cosine for text in ("a dog", "a red car", "mountains")
    }
    assert len(cosines | {first.cosine}) == 4  # it depends on the text


def test_score_identity_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from personalization.cli import main

    references = [str(FACES / "obama.jpg"), str(FACES / "obama2.jpg")]
    assert main(["score", "--image", str(FACES / "obama3.jpg"), "--references", *references]) == 0
    identity = json.loads(capsys.readouterr().out)["identity"]
    assert identity["outcome"] == "match" and identity["passed"] is True
    assert identity["best_distance"] < identity["threshold"] == faces.SAME_PERSON_THRESHOLD

    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((200, 200, 3), 90, dtype=np.uint8)).save(flat)
    assert main(["score", "--image", str(flat), "--references", *references]) == 0
    assert json.loads(capsys.readouterr().out)["identity"]["outcome"] == "no_face"
    assert main(["score", "--image", str(FACES / "obama3.jpg"), "--references", str(flat)]) == 2
    assert "no face found" in capsys.readouterr().err
