"""What the CLI shows while a command runs: a bar updating in place on a terminal, plain lines elsewhere.

Progress goes to stderr, so stdout keeps only each command's result. On a terminal a tqdm bar
shows step/total, the phase, what the command adds (the current loss for training) and the
ETA; when stderr is a file or a pipe (a log, CI) a line every `--log-every` steps and at the
end; `--quiet` shows neither.
"""

from __future__ import annotations

import argparse
import os
import sys
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

from personalization.progress import StepProgress


def add_progress_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="show no progress (results and errors only)")
    parser.add_argument(
        "--log-every",
        type=int,
        default=10,
        help="when stderr is not a terminal: a progress line every N steps (default 10)",
    )


def quiet_library_bars() -> None:
    """diffusers' and transformers' loading bars would interleave with ours (and bury logs)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def _has_size(stream: TextIO) -> bool:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):
        return False
    return size.columns > 0 and size.lines > 0


class ProgressDisplay:
    """A command's progress on `stream` (stderr): pass `update` (or the display) as the callback."""

    def __init__(
        self, label: str, *, quiet: bool = False, every: int = 10, stream: TextIO | None = None
    ) -> None:
        self.label = label
        self.quiet = quiet
        self.every = max(every, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = not quiet and self.stream.isatty()
        self.bar: tqdm | None = None

    def __call__(self, event: StepProgress) -> None:
        self.update(event)

    def update(self, event: StepProgress, details: str = "", brief: str | None = None) -> None:
        """Shows one step; `details` goes into plain lines, `brief` (default: details) beside the bar."""
        if self.quiet:
            return
        if not self.interactive:
            if event.step % self.every == 0 or event.step == event.total:
                extra = f"{details} " if details else ""
                self._line(
                    f"step {event.step}/{event.total} [{event.phase}] {extra}eta {event.eta_seconds:.0f}s"
                )
            return
        if self.bar is None:
            # Created at the first step, so loading the model does not count into the bar's rate.
            # A terminal that reports no size (a bare pseudo-terminal) would hide the bar entirely.
            sized = _has_size(self.stream)
            self.bar = tqdm(
                total=event.total,
                desc=f"{self.label} [{event.phase}]",
                file=self.stream,
                unit="step",
                dynamic_ncols=sized,
                ncols=None if sized else 80,
                nrows=None if sized else 24,
                mininterval=0.2,
                bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
            )
        if self.bar.total != event.total:
            self.bar.total = event.total
        shown = details if brief is None else brief
        eta = tqdm.format_interval(event.eta_seconds)
        self.bar.set_description_str(f"{self.label} [{event.phase}]", refresh=False)
        self.bar.set_postfix_str(f"{shown}, eta {eta}" if shown else f"eta {eta}", refresh=False)
        self.bar.update(event.step - self.bar.n)

    def write(self, text: str) -> None:
        """A message that must not break the bar (a notice); shown even with --quiet."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            self._line(text)

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
