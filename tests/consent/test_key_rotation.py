"""Master-key rotation: subject keys move to a new master key; files never change; nothing is lost."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from consent import actions, crypto, vault
from consent.models import Asset, AssetKind, Subject, SubjectKey
from consent.storage import private_storage
from tests.fixtures.consent import NamedBytes

from . import photos

pytestmark = pytest.mark.django_db

NEW_MASTER = "new-master-key-" + "n" * 40


def _enrollment(subject: Subject) -> Asset:
    return Asset.objects.for_tenant(subject.tenant).get(subject=subject, kind=AssetKind.ENROLLMENT_PHOTO)


def _stored_bytes(asset: Asset) -> bytes:
    with private_storage().open(asset.storage_name, "rb") as handle:
        return bytes(handle.read())


def _wrapped(subject: Subject) -> bytes:
    return bytes(SubjectKey.dangerously_unscoped.get(subject=subject).wrapped_key)


def _rotate(*options: str) -> str:
    out = io.StringIO()
    call_command("rotate_master_key", *options, stdout=out)
    return out.getvalue()


def test_rotation_rewraps_every_key_under_the_new_master_and_files_stay_readable(
    enrolled_subject: Subject, settings, tenant
) -> None:
    asset = _enrollment(enrolled_subject)
    plaintext, ciphertext, wrapped_before = (
        vault.read_asset(asset),
        _stored_bytes(asset),
        _wrapped(enrolled_subject),
    )
    old_master = settings.LIKENESS_MASTER_KEY
    settings.LIKENESS_MASTER_KEY, settings.LIKENESS_PREVIOUS_MASTER_KEYS = NEW_MASTER, [old_master]

    # Before the command runs, the previous key still opens the subject's files.
    assert vault.read_asset(asset) == plaintext
    assert "would rewrap 1 subject keys" in _rotate("--dry-run")
    assert _wrapped(enrolled_subject) == wrapped_before

    output = _rotate()
    assert "rewrapped 1 subject keys under the current master key, 0 already under it" in output
    assert "retire LIKENESS_PREVIOUS_MASTER_KEYS now" in output
    assert _wrapped(enrolled_subject) != wrapped_before
    assert _stored_bytes(asset) == ciphertext  # the data key did not change: no file was re-encrypted
    entry = AuditEntry.objects.for_tenant(tenant).get(action="consent.key_rewrapped")
    assert entry.actor is None and entry.payload["subject_id"] == enrolled_subject.pk

    # The previous key retired: the new one alone opens everything; the old one alone opens nothing.
    settings.LIKENESS_PREVIOUS_MASTER_KEYS = []
    assert vault.read_asset(asset) == plaintext
    assert "rewrapped 0 subject keys under the current master key, 1 already under it" in _rotate()
    settings.LIKENESS_MASTER_KEY = old_master
    with pytest.raises(crypto.DecryptionError, match="none of the configured master keys"):
        vault.read_asset(asset)


def test_a_key_no_configured_master_opens_is_reported_and_left_untouched(
    enrolled_subject: Subject, settings
) -> None:
    old_master = settings.LIKENESS_MASTER_KEY
    settings.LIKENESS_MASTER_KEY = NEW_MASTER  # the operator forgot LIKENESS_PREVIOUS_MASTER_KEYS
    wrapped_before = _wrapped(enrolled_subject)
    with pytest.raises(CommandError, match="1 subject keys open with no configured master key"):
        _rotate()
    assert _wrapped(enrolled_subject) == wrapped_before
    # Once the previous key is configured again, the same run completes and loses nothing.
    settings.LIKENESS_PREVIOUS_MASTER_KEYS = [old_master]
    assert "rewrapped 1 subject keys" in _rotate()
    assert vault.read_asset(_enrollment(enrolled_subject))


def test_keys_made_after_the_switch_are_wrapped_by_the_new_master_alone(
    enrolled_subject: Subject, make_subject, sign, staff, settings
) -> None:
    settings.LIKENESS_MASTER_KEY, settings.LIKENESS_PREVIOUS_MASTER_KEYS = (
        NEW_MASTER,
        [settings.LIKENESS_MASTER_KEY],
    )
    newcomer = make_subject()
    sign(newcomer)
    actions.set_enrollment_photo(
        actor=staff, subject=newcomer, upload=NamedBytes(photos.photo_bytes("obama.jpg"), "a.jpg")
    )
    settings.LIKENESS_PREVIOUS_MASTER_KEYS = []
    assert vault.read_asset(_enrollment(newcomer))
    with pytest.raises(crypto.DecryptionError):
        vault.read_asset(_enrollment(enrolled_subject))  # still under the old key: not rotated yet
