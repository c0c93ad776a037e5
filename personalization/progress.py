"""One progress style for training, generation and editing: step of total, phase, time; and cancelling.

Every long call takes `progress: ProgressCallback[...] | None`, called after each step with an
event whose `step` and `total` count the whole call (so a bar or a job row needs no arithmetic)
and whose `phase` says what the step belonged to. The callback cancels between steps by
returning "stop" or by raising `Cancelled`:
- generation and editing then raise `Cancelled`: nothing is returned and nothing is written;
- training returns `TrainResult(status="stopped")` on "stop", after writing a checkpoint it can
  resume from; a `Cancelled` raised by its callback propagates without that checkpoint.

Plain Python, no torch, so a caller can import it anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

STOP = "stop"


@dataclass(frozen=True)
class StepProgress:
    """A step done: `step` of `total` over the whole call, in `phase`; times in seconds."""

    step: int
    total: int
    phase: str
    eta_seconds: float
    elapsed_seconds: float


Event = TypeVar("Event", bound=StepProgress)
# A callback receives each event; "stop" (or raising Cancelled) cancels between steps.
ProgressCallback = Callable[[Event], str | None]


class Cancelled(Exception):  # noqa: N818 (it is what happened, not an error)
    """The call stopped between steps because its progress callback asked it to."""

    def __init__(self, phase: str, step: int, total: int) -> None:
        self.phase, self.step, self.total = phase, step, total
        super().__init__(f"cancelled after step {step} of {total} ({phase})")


class StepCounter:
    """Counts a call's steps, reports each with an ETA, and turns a "stop" answer into Cancelled.

    `total` may be corrected while running (a generation learns how many steps a scheduler
    takes when its pipeline call starts); it never drops below the steps already done.
    """

    def __init__(self, callback: ProgressCallback[StepProgress] | None, total: int) -> None:
        self.callback = callback
        self.total = total
        self.done = 0
        self.started = time.monotonic()

    def set_total(self, total: int) -> None:
        self.total = max(total, self.done)

    def step(self, phase: str) -> None:
        self.done += 1
        self.total = max(self.total, self.done)
        if self.callback is None:
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        event = StepProgress(self.done, self.total, phase, eta_seconds=eta, elapsed_seconds=elapsed)
        if self.callback(event) == STOP:
            raise Cancelled(phase, self.done, self.total)
