"""Envelope encryption for everything stored about a subject (crypto-erasure).

Each subject gets its own random 256-bit data key (DEK). Files are sealed with
AES-256-GCM under that key; the key itself is stored only wrapped (AES-256-GCM)
by a per-tenant key-encryption key (KEK) that is derived with HKDF from one
deployment secret and the tenant id, so no tenant key is ever stored. Erasing a
subject deletes the wrapped DEK first: every ciphertext of that subject, in
storage, in a backup or in a stray copy, becomes noise.

This module is pure: bytes in, bytes out, no Django. `consent.vault` binds it to
settings, the database and the private storage.

Envelope of a sealed file (version 1)::

    magic "LKNE" (4) | version 0x01 (1) | key id (16, UUID bytes) | nonce (12) | ciphertext + GCM tag

The whole header is the GCM associated data, so neither the version nor the key
id can be altered without the decryption failing. A wrapped key carries its own
version byte so the wrapping can change without re-encrypting files.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ENVELOPE_MAGIC = b"LKNE"
ENVELOPE_VERSION = 1
WRAP_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
_HEADER_BYTES = len(ENVELOPE_MAGIC) + 1 + 16 + NONCE_BYTES
# A deployment secret shorter than this cannot carry 256 bits of entropy in the
# base64/hex text an operator pastes into an environment variable.
MIN_MASTER_SECRET_CHARS = 32
_KEK_SALT = b"likeness/tenant-kek/v1"


class CryptoError(Exception):
    """Base class: a ciphertext or wrapped key could not be opened."""


class EnvelopeFormatError(CryptoError):
    """The bytes are not a Likeness envelope, or one of a version this code cannot read."""


class DecryptionError(CryptoError):
    """Authentication failed: wrong key, tampered bytes, or a key that was destroyed and replaced."""


@dataclass(frozen=True)
class EnvelopeHeader:
    version: int
    key_id: uuid.UUID
    nonce: bytes


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def derive_tenant_kek(master_secret: str, tenant_id: int | str) -> bytes:
    """The tenant's key-encryption key: HKDF-SHA256 over the deployment secret.

    Deriving instead of storing means a database dump never contains a key that
    opens anything; the tenant id as HKDF info keeps tenants cryptographically apart.
    """
    if len(master_secret) < MIN_MASTER_SECRET_CHARS:
        raise ValueError(f"the master secret must be at least {MIN_MASTER_SECRET_CHARS} characters")
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=_KEK_SALT, info=f"tenant:{tenant_id}".encode()
    )
    return hkdf.derive(master_secret.encode())


def _wrap_aad(tenant_id: int | str, key_id: uuid.UUID) -> bytes:
    # Binding the wrapped key to its tenant and key id stops a wrapped key row from
    # being copied onto another subject or tenant and unwrapped there.
    return b"likeness/subject-key|v%d|tenant:%s|key:%s" % (
        WRAP_VERSION,
        str(tenant_id).encode(),
        key_id.bytes,
    )


def wrap_data_key(kek: bytes, tenant_id: int | str, key_id: uuid.UUID, data_key: bytes) -> bytes:
    if len(data_key) != KEY_BYTES:
        raise ValueError("a data key is 32 bytes")
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(kek).encrypt(nonce, data_key, _wrap_aad(tenant_id, key_id))
    return bytes([WRAP_VERSION]) + nonce + sealed


def unwrap_data_key(kek: bytes, tenant_id: int | str, key_id: uuid.UUID, wrapped: bytes) -> bytes:
    if not wrapped or wrapped[0] != WRAP_VERSION:
        raise EnvelopeFormatError("unknown wrapped-key version")
    nonce, sealed = wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :]
    try:
        return AESGCM(kek).decrypt(nonce, sealed, _wrap_aad(tenant_id, key_id))
    except InvalidTag as exc:
        raise DecryptionError("the wrapped data key does not open with this tenant's key") from exc


def read_header(envelope: bytes) -> EnvelopeHeader:
    if len(envelope) < _HEADER_BYTES + 16 or envelope[:4] != ENVELOPE_MAGIC:
        raise EnvelopeFormatError("not a Likeness encrypted file")
    version = envelope[4]
    if version != ENVELOPE_VERSION:
        raise EnvelopeFormatError(f"unsupported envelope version {version}")
    return EnvelopeHeader(
        version=version, key_id=uuid.UUID(bytes=envelope[5:21]), nonce=envelope[21:_HEADER_BYTES]
    )


def seal(data_key: bytes, key_id: uuid.UUID, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    header = ENVELOPE_MAGIC + bytes([ENVELOPE_VERSION]) + key_id.bytes + nonce
    return header + AESGCM(data_key).encrypt(nonce, plaintext, header)


def open_sealed(data_key: bytes, envelope: bytes) -> bytes:
    header = read_header(envelope)
    raw_header = envelope[:_HEADER_BYTES]
    try:
        return AESGCM(data_key).decrypt(header.nonce, envelope[_HEADER_BYTES:], raw_header)
    except InvalidTag as exc:
        raise DecryptionError("the file does not open with this key (tampered, or another key)") from exc
