"""The registry's evaluation: fixed-seed portraits scored against the reference photos, honestly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from personalization import faces
from personalization.cache import PipelineCache
from personalization.evaluation import evaluate, evaluate_folder, score_images
from personalization.generate import load_generator
from personalization.progress import Cancelled, StepProgress
from personalization.scoring import ScoringError
from tests.personalization.conftest import FACES

REFERENCES = [FACES / "obama.jpg", FACES / "obama2.jpg"]


@pytest.fixture(scope="module")
def trained(tiny_lora_folder: Path) -> tuple[Any, Any]:
    return load_generator(tiny_lora_folder, device="cpu")


def test_the_tiny_model_shows_no_face_and_the_evaluation_says_so(trained: tuple[Any, Any]) -> None:
    pipe, manifest = trained
    events: list[StepProgress] = []
    result = evaluate(pipe, manifest, REFERENCES, steps=3, progress=events.append)
    assert len(result.images) == 4  # two prompts x two seeds
    assert {image.outcome for image in result.images} == {"no_face"}
    assert all(image.best_distance is None for image in result.images)
    assert result.mean_distance is None and result.with_face == [] and result.matches == 0
    assert result.summary() == "no face found in any of the 4 generated images"
    parameters = result.parameters
    assert parameters["seeds"] == [1000, 1001] and parameters["steps"] == 3
    assert parameters["prompts"][0] == "a photo of <sks> person"
    assert (parameters["unet_scale"], parameters["text_scale"]) == (0.6, 0.9)  # the manifest's
    assert [image.seed for image in result.images] == [1000, 1001, 1000, 1001]
    assert all(image.image.size == (64, 64) for image in result.images)
    record = json.loads(json.dumps(result.to_dict()))
    assert record["faces_found"] == 0 and record["mean_distance"] is None and len(record["images"]) == 4
    # One count over both generations, in order, ending at its total.
    assert [event.step for event in events] == list(range(1, len(events) + 1))
    assert events[-1].step == events[-1].total and {event.phase for event in events} == {"evaluate"}


def test_images_with_faces_are_scored_and_averaged_without_the_faceless_one() -> None:
    generated = [
        ("same person", 1, Image.open(FACES / "obama3.jpg")),
        ("someone else", 2, Image.open(FACES / "biden.jpg")),
        ("no face", 3, Image.fromarray(np.full((128, 128, 3), 127, dtype=np.uint8))),
    ]
    result = score_images(generated, REFERENCES, parameters={"steps": 30})
    outcomes = [image.outcome for image in result.images]
    assert outcomes == ["match", "mismatch", "no_face"]
    distances = [image.best_distance for image in result.images[:2]]
    assert all(d is not None for d in distances)
    assert result.mean_distance == pytest.approx(sum(distances) / 2)  # type: ignore[arg-type]
    assert distances[0] < faces.SAME_PERSON_THRESHOLD < distances[1]  # type: ignore[operator]
    assert result.matches == 1 and result.references == 2
    assert result.summary().startswith("2 of 3 images show a face; mean identity distance ")


def test_a_reference_without_a_face_fails_before_generating(trained: tuple[Any, Any]) -> None:
    pipe, manifest = trained
    flat = np.full((128, 128, 3), 30, dtype=np.uint8)
    events: list[StepProgress] = []
    with pytest.raises(ScoringError, match="no face found in reference #2"):
        evaluate(pipe, manifest, [FACES / "obama.jpg", flat], steps=3, progress=events.append)
    assert events == []


def test_a_folder_is_evaluated_through_the_cache_and_can_be_cancelled(
    tiny_lora_folder: Path, trained: tuple[Any, Any]
) -> None:
    cache = PipelineCache(max_bytes=2**32)
    first = evaluate_folder(tiny_lora_folder, REFERENCES, cache=cache, steps=3, per_prompt=1)
    second = evaluate_folder(tiny_lora_folder, REFERENCES, cache=cache, steps=3, per_prompt=1)
    assert cache.loads == 1
    alone = evaluate(*trained, REFERENCES, steps=3, per_prompt=1)
    for result in (first, second):
        assert all(
            np.array_equal(np.asarray(a.image), np.asarray(b.image))
            for a, b in zip(result.images, alone.images, strict=True)
        )
    with pytest.raises(Cancelled):
        evaluate_folder(tiny_lora_folder, REFERENCES, cache=cache, steps=3, progress=lambda event: "stop")


def test_evaluate_from_the_command_line(tiny_lora_folder: Path, tmp_path: Path, cli) -> None:
    done = cli(
        "evaluate",
        "--model",
        str(tiny_lora_folder),
        "--references",
        *map(str, REFERENCES),
        "--steps",
        "2",
        "--per-prompt",
        "1",
        "--out",
        str(tmp_path / "images"),
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["summary"] == "no face found in any of the 2 generated images"
    assert record["parameters"]["seeds"] == [1000] and len(list((tmp_path / "images").glob("*.png"))) == 2
    refused = cli("evaluate", "--model", str(tiny_lora_folder), "--references", str(tmp_path / "missing.jpg"))
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith("error: ")
