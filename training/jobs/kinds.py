"""The registry of job kinds: what a worker runs for each, under which consent purpose.

Each app registers its kinds in AppConfig.ready() (training: "training"; editing:
"generation", "edit"). Everything shared (queueing, dispatch, the runner, the
page and socket, metering) reads the kind from here, so adding a kind writes no
code in the job machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consent.models import Purpose
    from training.jobs.runner import JobContext
    from training.models import Job


class UnknownJobKindError(LookupError):
    """A job row names a kind no installed app registered."""


@dataclass(frozen=True)
class JobKind:
    """How to run one kind of job.

    `execute(specific_job, context)` does the work inside the worker: it reports
    progress through the context, stores every file through it (which checks
    consent before each write), and raises training.jobs.JobError with a sentence
    a person can act on when the job cannot be done.
    """

    name: str
    label: str
    model: type[Job]
    purpose: Purpose
    execute: Callable[[Any, JobContext], None]


_kinds: dict[str, JobKind] = {}


def register_job_kind(kind: JobKind) -> None:
    """Register (or replace, by name: ready() may run more than once) a kind of job."""
    _kinds[kind.name] = kind


def unregister_job_kind(name: str) -> None:
    _kinds.pop(name, None)


def job_kind(name: str) -> JobKind:
    try:
        return _kinds[name]
    except KeyError:
        raise UnknownJobKindError(f"No installed app runs jobs of kind {name!r}.") from None


def job_kinds() -> list[JobKind]:
    return [_kinds[name] for name in sorted(_kinds)]
