"""Envelope encryption: what crypto-erasure relies on."""

from __future__ import annotations

import uuid

import pytest

from consent import crypto

MASTER = "m" * 40


def test_seal_and_open_round_trip_and_header_names_the_key() -> None:
    key, key_id = crypto.new_data_key(), uuid.uuid4()
    sealed = crypto.seal(key, key_id, b"reference photo bytes")
    assert b"reference photo bytes" not in sealed
    assert crypto.read_header(sealed).key_id == key_id
    assert crypto.open_sealed(key, sealed) == b"reference photo bytes"


def test_another_key_or_a_flipped_bit_cannot_open() -> None:
    key, key_id = crypto.new_data_key(), uuid.uuid4()
    sealed = crypto.seal(key, key_id, b"x" * 100)
    with pytest.raises(crypto.DecryptionError):
        crypto.open_sealed(crypto.new_data_key(), sealed)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(crypto.DecryptionError):
        crypto.open_sealed(key, bytes(tampered))
    # The header is authenticated too: swapping the key id breaks the tag.
    relabelled = sealed[:5] + uuid.uuid4().bytes + sealed[21:]
    with pytest.raises(crypto.DecryptionError):
        crypto.open_sealed(key, relabelled)


def test_unknown_versions_and_foreign_bytes_are_refused() -> None:
    key, key_id = crypto.new_data_key(), uuid.uuid4()
    sealed = crypto.seal(key, key_id, b"data")
    with pytest.raises(crypto.EnvelopeFormatError, match="version 9"):
        crypto.open_sealed(key, sealed[:4] + bytes([9]) + sealed[5:])
    with pytest.raises(crypto.EnvelopeFormatError):
        crypto.open_sealed(key, b"\xff\xd8\xff plain jpeg bytes, never encrypted" * 2)


def test_wrapped_key_opens_only_for_its_tenant_and_key_id() -> None:
    data_key, key_id = crypto.new_data_key(), uuid.uuid4()
    kek_1 = crypto.derive_tenant_kek(MASTER, 1)
    assert kek_1 == crypto.derive_tenant_kek(MASTER, 1)
    assert kek_1 != crypto.derive_tenant_kek(MASTER, 2)
    assert kek_1 != crypto.derive_tenant_kek("n" * 40, 1)
    wrapped = crypto.wrap_data_key(kek_1, 1, key_id, data_key)
    assert data_key not in wrapped
    assert crypto.unwrap_data_key(kek_1, 1, key_id, wrapped) == data_key
    with pytest.raises(crypto.DecryptionError):
        crypto.unwrap_data_key(crypto.derive_tenant_kek(MASTER, 2), 2, key_id, wrapped)
    with pytest.raises(crypto.DecryptionError):
        crypto.unwrap_data_key(kek_1, 1, uuid.uuid4(), wrapped)


def test_short_master_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        crypto.derive_tenant_kek("short", 1)
