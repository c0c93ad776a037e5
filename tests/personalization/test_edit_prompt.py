"""An edit's default source prompt is the photo's own caption (LIPE inverts with a prompt that
describes the photo: a smile left out is absorbed into the identifier and fights the edit)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from personalization import faces
from personalization.captions import photo_prompt
from personalization.cli import main
from personalization.prompts import DEFAULT_PROMPT
from tests.personalization.conftest import FACES

OBAMA_CAPTION = "facing the camera, eyes open, looking at the camera, smiling with teeth"


def test_the_photo_prompt_is_its_caption_and_plain_without_a_face() -> None:
    assert photo_prompt(faces.load_rgb(FACES / "obama.jpg")) == f"{DEFAULT_PROMPT}, {OBAMA_CAPTION}"
    assert photo_prompt(np.full((200, 200, 3), 128, dtype=np.uint8)) == DEFAULT_PROMPT


def test_the_cli_edits_from_the_photos_caption_unless_told(tiny_lora_folder: Path, tmp_path: Path) -> None:
    photo = Image.open(FACES / "obama.jpg").convert("RGB")
    photo.thumbnail((400, 400))
    photo_path = tmp_path / "obama.png"
    photo.save(photo_path)
    out = tmp_path / "neutral.png"
    common = ["edit", "--model", str(tiny_lora_folder), "--image", str(photo_path), "--out", str(out)]
    common += ["--steps", "2", "--mask-steps", "1", "--resolution", "64", "--preset", "neutral", "--quiet"]
    assert main(common) == 0
    record = json.loads(out.with_name("neutral.json").read_text())
    assert record["source_prompt_from"] == "the photo's own caption"
    assert record["settings"]["source_prompt"] == f"a photo of <sks> person, {OBAMA_CAPTION}"
    # The preset replaces the described smile instead of fighting an undescribed one.
    assert record["settings"]["target_prompt"] == (
        "a photo of <sks> person, facing the camera, eyes open, looking at the camera, "
        "neutral expression, mouth closed"
    )
    assert main([*common, "--source-prompt", "a photo of {identity} {class_word}"]) == 0
    record = json.loads(out.with_name("neutral.json").read_text())
    assert record["source_prompt_from"] == "--source-prompt"
    assert record["settings"]["source_prompt"] == "a photo of <sks> person"
