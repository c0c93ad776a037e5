"""LIPE's regularisation set: class images the base model generates from editing-oriented prompts.

The set depends only on the base model, the class word and the resolution, so it is generated
once and cached on disk, then reused for every subject trained on the same base model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# Diverse poses, expressions, views and postures: the prior keeps the model able to render
# them for the class while the LoRA learns the subject (LIPE writes these with an LLM).
EDITING_PROMPTS = (
    "a photo of a {cls}, facing the camera, neutral expression",
    "a photo of a {cls}, head turned to the left",
    "a photo of a {cls}, head turned to the right",
    "a photo of a {cls}, looking up",
    "a photo of a {cls}, looking down",
    "a photo of a {cls}, head tilted to the side",
    "a photo of a {cls}, smiling with teeth",
    "a photo of a {cls}, laughing, eyes half closed",
    "a photo of a {cls}, surprised, mouth open",
    "a photo of a {cls}, frowning",
    "a photo of a {cls}, eyes closed",
    "a photo of a {cls}, winking",
    "a photo of a {cls}, side profile view",
    "a photo of a {cls}, three-quarter view",
    "a photo of a {cls}, seen from behind, looking over the shoulder",
    "a photo of a {cls}, arms crossed",
    "a photo of a {cls}, hand raised, waving",
    "a photo of a {cls}, hand on the chin, thinking",
    "a photo of a {cls}, sitting on a chair",
    "a photo of a {cls}, walking outdoors",
    "a photo of a {cls}, leaning against a wall",
    "a photo of a {cls}, talking, mouth open",
    "a close-up photo of a {cls}, looking at the camera",
    "a full-body photo of a {cls}, standing",
)


def default_cache_dir() -> Path:
    configured = os.environ.get("LIKENESS_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "likeness"


def base_model_key(base_model: str | Path, revision: str | None) -> str:
    """A stable folder name for a base model: hub id + revision, or a local folder's identity.

    A local folder is identified by its path, its model_index.json and its weight files' sizes
    and modification times, so a rebuilt model never reuses a stale class set.
    """
    local = Path(base_model)
    digest = hashlib.sha256()
    if local.is_dir():
        digest.update(str(local.resolve()).encode())
        for file in sorted(local.rglob("*")):
            if file.is_file():
                stat = file.stat()
                digest.update(f"{file.relative_to(local)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        label = local.name
    else:
        digest.update(f"{base_model}@{revision}".encode())
        label = str(base_model)
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '-', label)}-{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class ClassImage:
    path: Path
    prompt: str


def class_image_set(
    pipe: Any,
    *,
    model_key: str,
    class_word: str,
    count: int,
    resolution: int,
    steps: int,
    seed: int,
    cache_root: Path,
) -> tuple[list[ClassImage], int]:
    """The first `count` class images, generating only the missing ones. Returns (images, generated)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", class_word).strip("-") or "class"
    folder = cache_root / "class-images" / model_key / f"{slug}-{resolution}px-{steps}steps-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    images: list[ClassImage] = []
    generated = 0
    for index in range(count):
        prompt = EDITING_PROMPTS[index % len(EDITING_PROMPTS)].format(cls=class_word)
        path = folder / f"{index:05d}.png"
        meta = path.with_suffix(".json")
        if not (path.is_file() and meta.is_file() and json.loads(meta.read_text()).get("prompt") == prompt):
            generator = torch.Generator("cpu").manual_seed(seed + index)
            image = pipe(
                prompt,
                num_inference_steps=steps,
                height=resolution,
                width=resolution,
                generator=generator,
            ).images[0]
            partial = path.with_suffix(".partial.png")
            image.save(partial)
            partial.replace(path)  # a crash mid-write never leaves a truncated cached image
            meta.write_text(json.dumps({"prompt": prompt, "seed": seed + index, "steps": steps}))
            generated += 1
        images.append(ClassImage(path=path, prompt=prompt))
    return images, generated
