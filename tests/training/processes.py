"""Helpers of the tests that run a real Celery worker (tests/training/test_*processes.py)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings


def wait_for(predicate: Callable[[], bool], timeout: float, worker: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    output = worker.stdout.read() if worker.stdout and worker.poll() is not None else "(still running)"
    raise AssertionError(f"timed out waiting ({timeout} s); the worker said: {output}")


def socket_headers(client: Any) -> list[tuple[bytes, bytes]]:
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    return [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
    ]
