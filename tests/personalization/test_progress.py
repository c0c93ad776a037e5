"""One progress style for train, generate and edit: step/total over the whole call, phases, cancelling
between steps; and what the CLI shows (a bar on a terminal, lines otherwise, nothing with --quiet)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from personalization import edit
from personalization.dataset import PreparedDataset
from personalization.generate import GenerationSettings, HiresSettings, generate, load_generator
from personalization.progress import Cancelled, StepProgress
from personalization.terminal import ProgressDisplay
from personalization.training import TrainConfig, TrainProgress, train
from tests.personalization.conftest import FACES, REPO_ROOT, identity_train_args


@pytest.fixture(scope="module")
def trained(tiny_lora_folder: Path) -> tuple[Any, Any]:
    return load_generator(tiny_lora_folder, device="cpu")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(FACES / "obama.jpg").convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)


class Recorder:
    def __init__(self, stop_at: int | None = None) -> None:
        self.events: list[StepProgress] = []
        self.stop_at = stop_at

    def __call__(self, event: StepProgress) -> str | None:
        self.events.append(event)
        return "stop" if event.step == self.stop_at else None


def _counts_every_step(events: list[StepProgress]) -> None:
    assert [event.step for event in events] == list(range(1, len(events) + 1))
    assert events[-1].total == events[-1].step
    assert all(event.eta_seconds >= 0 and event.elapsed_seconds >= 0 for event in events)
    assert events[-1].eta_seconds == 0


def test_generation_reports_every_step_of_every_call(trained: tuple[Any, Any]) -> None:
    pipe, manifest = trained
    one_call = Recorder()
    generate(pipe, manifest, GenerationSettings(steps=3, count=2), progress=one_call)
    _counts_every_step(one_call.events)
    per_call = one_call.events[-1].total
    assert {event.total for event in one_call.events} == {per_call}  # known from the first step on
    assert {event.phase for event in one_call.events} == {"generate"}

    split = Recorder()
    generate(pipe, manifest, GenerationSettings(steps=3, count=2, max_batch=1), progress=split)
    _counts_every_step(split.events)
    assert {event.total for event in split.events} == {2 * per_call}

    second = Recorder()
    hires = HiresSettings(scale=2.0, strength=0.5)
    generate(pipe, manifest, GenerationSettings(steps=4, hires=hires), progress=second)
    _counts_every_step(second.events)
    phases = [event.phase for event in second.events]
    assert phases == sorted(phases) and set(phases) == {"generate 1/2", "generate 2/2"}


def test_stopping_a_generation_cancels_it_between_steps_and_leaves_the_pipeline_clean(
    trained: tuple[Any, Any],
) -> None:
    pipe, manifest = trained
    settings = GenerationSettings(steps=4, count=2, seed=3, scheduler="euler")
    before = generate(pipe, manifest, settings)
    stopping = Recorder(stop_at=2)
    original = pipe.scheduler
    with pytest.raises(Cancelled) as cancelled:
        generate(pipe, manifest, settings, progress=stopping)
    assert (cancelled.value.step, cancelled.value.phase) == (2, "generate")
    assert len(stopping.events) == 2 and pipe.scheduler is original
    after = generate(pipe, manifest, settings)
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(before.images, after.images, strict=True)
    )

    def raising(event: StepProgress) -> None:
        raise Cancelled(event.phase, event.step, event.total)

    with pytest.raises(Cancelled):
        generate(pipe, manifest, settings, progress=raising)


def test_editing_reports_its_three_phases_as_one_count_and_cancels(
    trained: tuple[Any, Any], photo: Image.Image
) -> None:
    pipe, _ = trained
    settings = edit.EditSettings(
        source_prompt="a photo of <sks> person",
        target_prompt="a photo of <sks> person, smiling",
        identifier="<sks>",
        steps=4,
        mask_steps=2,
        resolution=64,
    )
    events = Recorder()
    first = edit.edit_image(pipe, photo, settings, progress=events)
    _counts_every_step(events.events)
    assert [event.phase for event in events.events] == ["invert"] * 4 + ["mask"] * 2 + ["edit"] * 4
    assert {event.total for event in events.events} == {10}
    # A window opening after the mask steps reuses them: they are not counted (or run) twice.
    late = Recorder()
    edit.edit_image(pipe, photo, replace(settings, blend_start=2), progress=late)
    assert [event.phase for event in late.events] == ["invert"] * 4 + ["mask"] * 2 + ["edit"] * 2
    assert {event.total for event in late.events} == {8}

    with pytest.raises(Cancelled):
        edit.edit_image(pipe, photo, settings, progress=Recorder(stop_at=6))
    again = edit.edit_image(pipe, photo, settings)  # attention processors were put back
    assert np.array_equal(np.asarray(again.image), np.asarray(first.image))


def test_training_events_share_the_style_and_a_raised_cancel_propagates(
    tiny_sd: Path, prepared_source: PreparedDataset, tmp_path: Path
) -> None:
    config = TrainConfig(
        method="identity",
        base_model=str(tiny_sd),
        images=prepared_source.root,
        out=tmp_path / "out",
        steps=4,
        prior_preservation=False,  # the events are under test, not the class set
        checkpoint_every=0,
        validation_repeats=0,
    )

    def cancel(event: TrainProgress) -> None:
        assert isinstance(event, StepProgress) and event.total == 4 and "total" in event.losses
        if event.step == 2:
            raise Cancelled(event.phase, event.step, event.total)

    with pytest.raises(Cancelled):
        train(config, cancel)
    assert not (config.out / "manifest.json").exists()


def _cli_args(
    tiny_sd: Path, prepared: PreparedDataset, trained_folder: Path, tmp_path: Path
) -> dict[str, list[str]]:
    return {
        "train": identity_train_args(
            tiny_sd,
            prepared.root,
            tmp_path / "trained",
            *("--steps", "3", "--log-every", "2"),
            "--no-prior-preservation",  # the progress lines are under test, not the class set
        ),
        "generate": [
            "generate",
            "--model",
            str(trained_folder),
            "--out",
            str(tmp_path / "images"),
            "--steps",
            "3",
            "--log-every",
            "2",
        ],
        "edit": [
            "edit",
            "--model",
            str(trained_folder),
            "--image",
            str(FACES / "obama.jpg"),
            "--preset",
            "smile",
            "--out",
            str(tmp_path / "edit" / "smile.png"),
            "--steps",
            "3",
            "--mask-steps",
            "1",
            "--resolution",
            "64",
            "--log-every",
            "2",
        ],
    }


def _read_all(leader: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the terminal is gone once its other side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def _on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Runs the CLI with stderr on a pseudo-terminal of 100x30 (what a person at a shell has)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "personalization", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    shown = _read_all(leader)
    return process.wait(timeout=300), shown


def test_a_terminal_that_reports_no_size_still_gets_a_bar() -> None:
    leader, follower = pty.openpty()  # a bare pseudo-terminal: 0 columns, 0 rows
    with open(follower, "w", encoding="utf-8") as stream, ProgressDisplay("train", stream=stream) as display:
        for step in (1, 2):
            display.update(StepProgress(step, 2, "identity", 0.0, 0.1), brief="loss 0.5000")
    shown = _read_all(leader)
    assert "train [identity] 100%|" in shown and "2/2" in shown and "loss 0.5000" in shown


@pytest.mark.parametrize("command", ["train", "generate", "edit"])
def test_the_cli_shows_a_bar_on_a_terminal_and_lines_elsewhere(
    command: str,
    tiny_sd: Path,
    prepared_source: PreparedDataset,
    tiny_lora_folder: Path,
    tmp_path: Path,
    cli,
) -> None:
    args = _cli_args(tiny_sd, prepared_source, tiny_lora_folder, tmp_path)[command]
    status, shown = _on_a_terminal(args)
    assert status == 0, shown
    assert "\r" in shown and "%|" in shown and "eta" in shown  # a bar, redrawn in place
    assert f"{command} [" in shown
    assert "Loading pipeline components" not in shown  # the libraries' own bars stay off
    if command == "train":
        assert re.search(r"3/3 \[[0-9:]+, loss \d+\.\d{4}, eta", shown)

    piped = cli(*[arg.replace(str(tmp_path), str(tmp_path / "piped")) for arg in args])
    assert piped.returncode == 0, piped.stderr
    lines = [line for line in piped.stderr.splitlines() if line.startswith("step ")]
    assert lines and "\r" not in piped.stderr and "%|" not in piped.stderr
    last = lines[-1].split()[1]  # "N/N": the final step always gets its line
    assert last.split("/")[0] == last.split("/")[1]
    assert all(int(line.split()[1].split("/")[0]) % 2 == 0 for line in lines[:-1])  # --log-every 2
    assert "step " not in piped.stdout  # stdout holds the result only

    quiet = cli(*[arg.replace(str(tmp_path), str(tmp_path / "quiet")) for arg in args], "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert "step " not in quiet.stderr
