"""The private storage on S3 or an S3-compatible store (LIKENESS_STORAGE_BACKEND=s3).

A module of its own because django-storages' S3 backend imports boto3, which only the `s3`
extra installs: the filesystem default never imports it.
"""

from __future__ import annotations

from typing import Any

from storages.backends.s3 import S3Storage

from consent.storage import NO_URL


class PrivateS3Storage(S3Storage):
    """S3 storage without URLs: a presigned link would bypass the tenant and permission checks
    of the download view (the object is ciphertext, but its existence and size would leak)."""

    def url(self, name: str, parameters: Any = None, expire: Any = None, http_method: Any = None) -> str:
        raise NotImplementedError(NO_URL)
