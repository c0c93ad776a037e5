"""How other apps take part in a subject's erasure.

Files are covered already: every file of a subject is a consent.Asset row, and
erasure destroys the subject key, deletes every such file and sweeps the
subject's storage prefix. What the consent app cannot know is the other apps'
own state: queued or running jobs that must stop, released outputs that must be
marked withdrawn, rows that hold what was derived from the subject's files (a
reference set's captions and face geometry) and must be cleared. Those apps
register an ErasureHook in their AppConfig.ready():

    from consent.erasure import ErasureHook, register_erasure_hook

    register_erasure_hook(ErasureHook(
        name="training.jobs",
        cancel_jobs=cancel_jobs_of_subject,       # (subject) -> ids of the jobs it cancelled
    ))
    register_erasure_hook(ErasureHook(
        name="training.reference_sets",
        forget_rows=forget_reference_sets,        # (subject) -> ids of the rows it cleared
    ))
    register_erasure_hook(ErasureHook(
        name="editing.outputs",
        cancel_jobs=cancel_edit_jobs_of_subject,
        withdraw_outputs=withdraw_released_outputs,  # (subject) -> ids of the outputs marked withdrawn
    ))

Contract: hooks run inside the erasure's transaction, after the key is
destroyed and before the files are deleted (jobs cancelled first cannot write a
new file meanwhile); they must be idempotent (an interrupted erasure runs them
again) and return the ids they acted on, which go into the deletion certificate
(forgotten rows: into the erasure's audit entry).
Foreign keys to consent.Asset must be on_delete=SET_NULL: the rows go away
(consent.actions.files.delete_file_rows empties them, in one statement on PostgreSQL, and
refuses, ImproperlyConfigured, a foreign key that is not SET_NULL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consent.models import Subject

SubjectHook = Callable[["Subject"], Iterable[str | int]]


@dataclass(frozen=True)
class ErasureHook:
    name: str
    cancel_jobs: SubjectHook | None = None
    withdraw_outputs: SubjectHook | None = None
    forget_rows: SubjectHook | None = None


_hooks: dict[str, ErasureHook] = {}


def register_erasure_hook(hook: ErasureHook) -> None:
    """Register (or replace, by name: ready() may run more than once) an app's erasure hook."""
    _hooks[hook.name] = hook


def unregister_erasure_hook(name: str) -> None:
    _hooks.pop(name, None)


def registered_hooks() -> list[ErasureHook]:
    return [_hooks[name] for name in sorted(_hooks)]
