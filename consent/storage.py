"""The private storage backend: where subjects' ciphertexts live.

Any Django Storage works (filesystem by default, S3 through django-storages in
production: see settings.STORAGES["likeness_private"]). What this module adds is
the refusal to hand out URLs: nothing in this backend is ever reachable from a
public media URL, every read goes through a view that checks tenant and
permission and decrypts (consent.views.asset_file).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db import transaction

PRIVATE_STORAGE_ALIAS = "likeness_private"
NO_URL = "private files have no URL: serve them through consent.views.asset_file"


class PrivateFileSystemStorage(FileSystemStorage):
    """Filesystem storage without URLs: a template that tries `.url` fails loudly."""

    def url(self, name: str | None) -> str:
        raise NotImplementedError(NO_URL)


def private_storage() -> Storage:
    return storages[PRIVATE_STORAGE_ALIAS]


def subject_prefix(tenant_id: int, subject_id: int) -> str:
    """Every file of a subject lies under this prefix, so erasure can sweep it even for rows it lost."""
    return f"tenants/{tenant_id}/subjects/{subject_id}"


def walk(storage: Storage, prefix: str) -> list[str]:
    """Every file name under `prefix`, recursively, through the Storage API only (works on S3 too)."""
    try:
        directories, files = storage.listdir(prefix)
    except FileNotFoundError:  # filesystem: no such folder; S3 answers an empty listing instead
        return []
    names = [f"{prefix}/{name}" for name in files]
    for directory in directories:
        names.extend(walk(storage, f"{prefix}/{directory}"))
    return names


@contextmanager
def files_removed_on_rollback() -> Iterator[list[str]]:
    """A transaction whose stored files go with it when it fails: append each file's storage name.

    consent.actions.store_subject_file deletes its own file when its own step
    fails, but the rows it writes roll back with an enclosing transaction that
    fails later, which would leave the ciphertext behind in storage: a partial
    artifact of a failed job or upload. Use this as the outermost transaction of
    a write that stores several files (an enclosing transaction that rolls back
    later is not seen).
    """
    stored: list[str] = []
    try:
        with transaction.atomic():
            yield stored
    except BaseException:
        storage = private_storage()
        for name in stored:
            storage.delete(name)
        raise
