"""The benchmark scripts still run end to end (tiny models, CPU), so a GPU session's one call works.

Nothing here asserts a speed: the scripts measure, docs/benchmarks.md records. What is checked is
that every measurement the scripts promise comes out as a row with a number, and that the JSON a
cut-short device run brings back is written as rows arrive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FACES = REPO_ROOT.parent / "shared" / "data" / "faces"


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _table_rows(output: str) -> list[list[str]]:
    """The body of the one Markdown table a script prints (header and separator dropped)."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[2:]]


@pytest.mark.timeout(600)
def test_train_speed_measures_every_loop_beside_the_plain_one(tmp_path: Path) -> None:
    results = tmp_path / "rows.json"
    output = _run(
        "bench/train_speed.py",
        "--size=tiny",
        "--kinds=sd15",
        "--batches=1",
        "--steps=2",
        "--warmup=1",
        "--threads=1",
        f"--work={tmp_path}",
        f"--faces={FACES}",
        f"--json={results}",
    )
    loops = [row["loop"] for row in json.loads(results.read_text())]
    assert loops == ["plain", "identity", "multiconcept (embeddings)", "multiconcept (joint)"]
    for row in json.loads(results.read_text()):
        assert row["steps_per_s"]["median"] > 0 and row["peak_mib"] > 0
    table = _table_rows(output)
    assert [cells[3] for cells in table] == loops
    assert all(cells[:3] == ["sd15 tiny", "64", "1"] and float(cells[4]) > 0 for cells in table)


@pytest.mark.timeout(600)
def test_sample_speed_times_generation_and_editing_beside_plain_diffusers(tmp_path: Path) -> None:
    output = _run(
        "bench/sample_speed.py",
        "--tiny",
        "--kinds=sd15",
        "--steps=6",
        "--repeats=1",
        "--threads=1",
        f"--work={tmp_path}",
        f"--photo={FACES / 'obama.jpg'}",
    )
    table = _table_rows(output)
    assert all(float(cells[1]) > 0 for cells in table)
    labels = [cells[0] for cells in table]
    assert [label.split(": ")[1] for label in labels] == [
        "plain diffusers",
        "generate",
        "edit (inversion + edit)",
    ]


def test_the_device_scripts_parse() -> None:
    for script in ("bench/device_prepare.sh", "bench/device_run.sh"):
        subprocess.run(["bash", "-n", script], cwd=REPO_ROOT, check=True)


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_real_models_initialise_their_weights_on_another_device(kind: str) -> None:
    """On a GPU the real-size weights are initialised there; anything else built on that device
    (a scheduler turning tensors into numpy) would fail only there. The meta device fails the same
    way and costs nothing, so the real architectures are assembled on it here."""
    from bench.common import real_pipeline

    pipe = real_pipeline(kind, "meta")
    assert pipe.unet.device.type == "meta" and pipe.vae.device.type == "meta"
    assert sum(parameter.numel() for parameter in pipe.unet.parameters()) > (
        2.5e9 if kind == "sdxl" else 8.5e8
    )
    assert pipe.scheduler.alphas_cumprod.device.type == "cpu"


def test_train_flops_counts_both_steps_at_the_real_sizes() -> None:
    rows = _table_rows(_run("bench/train_flops.py"))
    assert [cells[:2] for cells in rows] == [["sd15", "512"], ["sdxl", "1024"]]
    for cells in rows:
        flop_ratio, launch_ratio = (float(cell.rstrip("x")) for cell in cells[-2:])
        assert flop_ratio > launch_ratio >= 1.0  # caching removes the VAE's arithmetic, few of the launches


@pytest.mark.timeout(600)
def test_preset_speed_times_the_quick_presets_and_a_two_image_generation(tmp_path: Path) -> None:
    results = tmp_path / "rows.json"
    output = _run(
        "bench/preset_speed.py",
        "--steps=2",
        "--threads=1",
        f"--work={tmp_path}",
        f"--faces={FACES}",
        f"--json={results}",
    )
    rows = json.loads(results.read_text())
    assert [row["measurement"].split(" (")[0] for row in rows] == [
        "train `quick` identity",
        "train `quick` multiconcept",
        "generate 2 images, `quick`",
        "generate 2 images, `standard`",
        "generate 2 images, `quick`",
        "generate 2 images, `standard`",
        "evaluate a new model, 4 images",
    ]
    assert all(row["wall_s"] > 0 and row["cpu_s"] > 0 for row in rows)
    assert all(row["training_s"] > 0 for row in rows[:2])
    assert len(_table_rows(output)) == len(rows)
