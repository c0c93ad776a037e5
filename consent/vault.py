"""Binds consent.crypto to settings and the private storage: keys in, plaintext out.

No database writes happen here (those are consent.actions'); this module seals
bytes for a subject key, names the files, and opens a stored asset for the
views and for the other apps (training reads reference photos through it).
"""

from __future__ import annotations

import io
import logging
import uuid

import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from consent import crypto
from consent.models import Asset, SubjectKey
from consent.storage import private_storage, subject_prefix
from consent.tokens import sha256_hex

logger = logging.getLogger(__name__)


class KeyDestroyedError(Exception):
    """The data key that sealed this file no longer exists: the subject was erased."""


class AssetIntegrityError(Exception):
    """The stored file is not the one that was stored: altered or damaged in storage, never served.

    GCM alone would not notice every such change: another authentic file of the
    same subject (same key) swapped in under this name decrypts without error.
    Asset.sha256 names the exact ciphertext stored, so any change is caught
    before decryption. The message names the asset id only: safe for a page or a log.
    """

    def __init__(self, asset_id: int) -> None:
        self.message = (
            f"Stored file #{asset_id} failed its integrity check (its checksum does not match): it was "
            "altered or damaged in storage since it was stored, so it is not served. The event is logged; "
            "an operator can restore the file from a backup."
        )
        super().__init__(self.message)


def _master_secrets() -> list[str]:
    """The current master secret first, then the ones it replaced (still accepted for unwrapping)."""
    secret = settings.LIKENESS_MASTER_KEY
    if not secret:
        raise ImproperlyConfigured("LIKENESS_MASTER_KEY is not set: subject files cannot be encrypted.")
    return [secret, *settings.LIKENESS_PREVIOUS_MASTER_KEYS]


def _tenant_kek(tenant_id: int) -> bytes:
    return crypto.derive_tenant_kek(_master_secrets()[0], tenant_id)


def new_wrapped_key(tenant_id: int) -> tuple[uuid.UUID, bytes]:
    """A fresh key id and its data key wrapped for the tenant (the plaintext key is never stored)."""
    key_id = uuid.uuid4()
    return key_id, crypto.wrap_data_key(_tenant_kek(tenant_id), tenant_id, key_id, crypto.new_data_key())


def _unwrap_with_index(subject_key: SubjectKey) -> tuple[bytes, int]:
    """The data key and the position of the master secret that opened it (0: the current one).

    A wrong key fails GCM authentication, so trying the previous secrets in turn can never
    return a wrong data key; it only costs one HKDF per secret during a rotation.
    """
    for index, secret in enumerate(_master_secrets()):
        kek = crypto.derive_tenant_kek(secret, subject_key.tenant_id)
        try:
            data_key = crypto.unwrap_data_key(
                kek, subject_key.tenant_id, subject_key.key_id, bytes(subject_key.wrapped_key)
            )
        except crypto.DecryptionError:
            continue
        return data_key, index
    raise crypto.DecryptionError(
        f"subject key {subject_key.key_id} opens with none of the configured master keys "
        "(LIKENESS_MASTER_KEY, LIKENESS_PREVIOUS_MASTER_KEYS)"
    )


def unwrap(subject_key: SubjectKey) -> bytes:
    return _unwrap_with_index(subject_key)[0]


def rewrapped(subject_key: SubjectKey) -> bytes | None:
    """The data key wrapped anew under the current master secret; None when it already is.

    The data key itself does not change, so no stored file needs re-encrypting.
    """
    data_key, index = _unwrap_with_index(subject_key)
    if index == 0:
        return None
    kek = _tenant_kek(subject_key.tenant_id)
    return crypto.wrap_data_key(kek, subject_key.tenant_id, subject_key.key_id, data_key)


def storage_name(tenant_id: int, subject_id: int, key_id: uuid.UUID, kind: str, extension: str) -> str:
    """Files are grouped by key under the subject prefix, so erasure can sweep a destroyed key's folder."""
    return f"{subject_prefix(tenant_id, subject_id)}/{key_id.hex}/{kind}/{uuid.uuid4().hex}.{extension}.lke"


def key_folder(tenant_id: int, subject_id: int, key_id: uuid.UUID) -> str:
    return f"{subject_prefix(tenant_id, subject_id)}/{key_id.hex}"


def _key_for(tenant_id: int, subject_id: int, key_id: uuid.UUID) -> SubjectKey:
    subject_key = SubjectKey.dangerously_unscoped.filter(
        tenant_id=tenant_id, subject_id=subject_id, key_id=key_id
    ).first()
    if subject_key is None:
        raise KeyDestroyedError(
            "the data key of this file has been destroyed; its contents are unrecoverable"
        )
    return subject_key


def open_envelope(tenant_id: int, subject_id: int, envelope: bytes) -> bytes:
    """Decrypt any sealed bytes of a subject (a stored file, or a copy of one) with the key named inside."""
    header = crypto.read_header(envelope)
    return crypto.open_sealed(unwrap(_key_for(tenant_id, subject_id, header.key_id)), envelope)


def read_asset(asset: Asset) -> bytes:
    """The plaintext of a stored file, after checking the ciphertext against the SHA-256 recorded at storing.

    The caller has already checked tenant and permission. Fails closed with
    AssetIntegrityError (logged once, ids and digests only) rather than decrypt a
    file that is not the one stored.
    """
    with private_storage().open(asset.storage_name, "rb") as handle:
        envelope = handle.read()
    found = sha256_hex(envelope)
    if found != asset.sha256:
        logger.error(
            "asset %s of tenant %s (subject %s) failed its checksum: recorded sha256 %s, stored file %s; "
            "refused",
            asset.pk,
            asset.tenant_id,
            asset.subject_id,
            asset.sha256,
            found,
        )
        raise AssetIntegrityError(asset.pk)
    return open_envelope(asset.tenant_id, asset.subject_id, envelope)


def embedding_to_bytes(embedding: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(embedding, dtype=np.float64), allow_pickle=False)
    return buffer.getvalue()


def embedding_from_bytes(data: bytes) -> np.ndarray:
    return np.asarray(np.load(io.BytesIO(data), allow_pickle=False), dtype=np.float64)
