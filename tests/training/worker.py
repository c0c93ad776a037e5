"""A real Celery worker on the `gpu` queue that also runs the probe kind (tests/training/probe.py).

Started as a subprocess by the job tests: `python -m tests.training.worker`.
"""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from config.celery import app  # noqa: E402  (Django first)
from tests.support import TEST_WORKER_ARGS  # noqa: E402
from tests.training import probe  # noqa: E402

probe.register()

if __name__ == "__main__":
    app.worker_main(["worker", "-Q", "gpu,default", *TEST_WORKER_ARGS])
