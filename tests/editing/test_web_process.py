"""The web process never loads torch: CUDA is initialised only inside a GPU worker (docs/jobs.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What a web process imports: the settings and apps (EditingConfig.ready() registers the kinds and with
# them editing.worker), the URLs with every API viewset, the ASGI application.
WEB_PROCESS = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django
django.setup()
import config.asgi, config.urls, editing.actions, editing.api, training.jobs.pipelines, editing.worker
from training.jobs import job_kind
assert [job_kind(name).model.__name__ for name in ("generation", "edit")] == ["GenerationJob", "EditJob"]
loaded = sorted(name for name in ("torch", "diffusers", "transformers", "peft") if name in sys.modules)
print(",".join(loaded) or "none")
"""


def test_the_web_process_registers_the_kinds_without_importing_torch():
    result = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"DJANGO_DEBUG": "1", "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"
