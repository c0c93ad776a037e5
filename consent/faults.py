"""Crash points: let a test kill this process with SIGKILL at a chosen step.

Resumability claims ("a sweep killed halfway finishes on the next run, nothing
lost or erased twice") are only worth something if a real crash is tested: an
exception would unwind through `finally` blocks and transaction rollbacks that a
power cut or an OOM kill never runs. Set LIKENESS_CRASH_AT="<point>:<n>" in the
environment of a process and it dies, with no cleanup at all, the n-th time it
passes `<point>`. Unset (always, outside such tests), a crash point costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

CRASH_ENV = "LIKENESS_CRASH_AT"
_passes: Counter[str] = Counter()


def crash_point(name: str) -> None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    _passes[name] += 1
    if _passes[name] >= int(count or "1"):
        os.kill(os.getpid(), signal.SIGKILL)
