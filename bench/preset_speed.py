"""What a newcomer waits for on the embedded default: the `quick` presets and a 2-image generation.

    python bench/preset_speed.py                     # the tiny model, CPU, torch's own thread count
    python bench/preset_speed.py --threads 1 --json rows.json

Each CLI measurement is a fresh `python -m personalization ...` process timed from start to exit
(imports, model load, the work, writing the files), as a user of the CLI or a worker starting
cold sees it; the manifest's `wall_time_s` (load to written folder) is given beside training.
The warm rows reuse one PipelineCache in this process, as a long-lived worker does: the second
generation of a model does not load it again. `--steps` shortens every run (a smoke test of the
script; its figures then mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import DEFAULT_FACES, DEFAULT_WORK, ensure_data, ensure_model  # noqa: E402


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _cli(args: list[str], threads: int | None) -> tuple[float, float]:
    """(wall, CPU) seconds of one CLI process; CPU time moves less than wall time on a shared machine."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cpu = _cpu_seconds(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "personalization", *args, "--quiet"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return elapsed, _cpu_seconds(resource.RUSAGE_CHILDREN) - cpu


def _timed(call: Any) -> tuple[float, float]:
    cpu = _cpu_seconds(resource.RUSAGE_SELF)
    started = time.perf_counter()
    call()
    return time.perf_counter() - started, _cpu_seconds(resource.RUSAGE_SELF) - cpu


def _median_of(repeats: int, call: Any) -> tuple[float, float]:
    """The run with the median wall time (other jobs on a shared machine only ever add time)."""
    timings = sorted(_timed(call) for _ in range(repeats))
    return timings[len(timings) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--steps", type=int, help="override every run's steps (smoke test only)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="models, data, outputs")
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES, help="folder of the shared face photos")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    import torch

    from personalization.cache import PipelineCache
    from personalization.evaluation import evaluate
    from personalization.generate import GenerationSettings, generate
    from personalization.presets import resolve_generation
    from personalization.terminal import quiet_library_bars

    quiet_library_bars()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = ensure_model("tiny", "sd15", args.work)
    source, style = ensure_data(args.faces, 64, args.work)
    runs = args.work / "runs" / "presets"
    shutil.rmtree(runs, ignore_errors=True)
    processor = platform.processor() or platform.machine()
    threads = args.threads or torch.get_num_threads()
    where = f"CPU ({processor}, {os.cpu_count()} cores, {threads} torch threads), torch {torch.__version__}"
    date = datetime.now(UTC).date().isoformat()
    rows: list[dict[str, Any]] = []
    load = "/".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"# {date} on {where}, tiny SD 1.5 model at 64 px; load average {load} at the start")
    print("| measurement | steps | wall s | CPU s | of which training (manifest) s |")
    print("| --- | ---: | ---: | ---: | ---: |", flush=True)

    def keep(label: str, steps: int, timing: tuple[float, float], training: float | None = None) -> None:
        wall, cpu = timing
        row = {
            "date": date,
            "device": where,
            "measurement": label,
            "steps": steps,
            "wall_s": wall,
            "cpu_s": cpu,
        }
        rows.append(row if training is None else {**row, "training_s": training})
        if args.json:  # after every row: a run stopped at a time limit keeps what it measured
            args.json.write_text(json.dumps(rows, indent=2))
        shown = "" if training is None else f"{training:.1f}"
        print(f"| {label} | {steps} | {wall:.1f} | {cpu:.1f} | {shown} |", flush=True)

    steps = [] if args.steps is None else ["--steps", str(args.steps)]
    trained = {}
    for method in ("identity", "multiconcept"):
        out = runs / method
        data = ["--images", str(source), "--out", str(out)]
        if method == "multiconcept":
            data += ["--style-images", str(style)]
        preset = ["train", "--preset", "quick", "--method", method, "--base-model", str(model)]
        timing = _cli([*preset, *data, *steps], args.threads)
        manifest = json.loads((out / "manifest.json").read_text())
        keep(f"train `quick` {method} (CLI, cold)", manifest["steps"], timing, manifest["wall_time_s"])
        trained[method] = out

    generations = {
        name: resolve_generation(name, {"count": 2}, model_kind="sd15").settings_kwargs()
        for name in ("quick", "standard")
    }
    for name, values in generations.items():
        count = values["steps"] if args.steps is None else args.steps
        extra = ["--scheduler", values["scheduler"], "--steps", str(count), "--count", "2"]
        out = runs / f"generate-{name}"
        generation = ["generate", "--model", str(trained["identity"]), "--out", str(out), *extra]
        keep(f"generate 2 images, `{name}` (CLI, cold)", count, _cli(generation, args.threads))

    # A warm worker: the base stays loaded; each job applies the trained folder, runs, restores.
    cache = PipelineCache(max_bytes=2**32)
    folder = trained["identity"]
    with cache.trained(folder) as (pipe, manifest):
        # The worker's first job: it loads the base and pays torch's first-call costs.
        generate(pipe, manifest, GenerationSettings(steps=1, scheduler="dpm++2m"))
    for name, values in generations.items():
        if args.steps is not None:
            values = {**values, "steps": args.steps}
        settings = GenerationSettings(prompt="a photo of {identity} {class_word}", **values)

        def job(settings: GenerationSettings = settings) -> None:
            with cache.trained(folder) as (pipe, manifest):
                generate(pipe, manifest, settings)

        label = f"generate 2 images, `{name}` (warm worker: apply model, generate, restore; median of 3)"
        keep(label, settings.steps, _median_of(3, job))
    references = sorted(args.faces.glob("obama*.jpg"))
    eval_steps = 30 if args.steps is None else args.steps

    def evaluation() -> None:
        with cache.trained(folder) as (pipe, manifest):
            evaluate(pipe, manifest, references, steps=eval_steps)

    keep("evaluate a new model, 4 images (warm worker)", eval_steps, _timed(evaluation))
    if cache.loads != 1:
        raise RuntimeError(f"the warm worker loaded the base {cache.loads} times")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
