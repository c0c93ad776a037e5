"""A write that stores several files and then fails leaves none of them behind (consent.storage)."""

from __future__ import annotations

import pytest

from consent import actions
from consent.models import AssetKind
from consent.storage import files_removed_on_rollback, private_storage

pytestmark = pytest.mark.django_db


def test_files_stored_in_a_block_that_fails_are_deleted_again(make_subject, sign, storage_root):
    subject = make_subject()
    sign(subject)
    before = {path.name for path in storage_root.rglob("*") if path.is_file()}
    with pytest.raises(RuntimeError), files_removed_on_rollback() as stored:
        for data in (b"first", b"second"):
            asset = actions.store_subject_file(
                subject=subject, kind=AssetKind.OUTPUT, data=data, content_type="image/png", extension="png"
            )
            stored.append(asset.storage_name)
        names = list(stored)
        assert all(private_storage().exists(name) for name in names)
        raise RuntimeError("the third output could not be written")
    assert not any(private_storage().exists(name) for name in names)
    assert not subject.assets.filter(kind=AssetKind.OUTPUT).exists()
    assert {path.name for path in storage_root.rglob("*") if path.is_file()} == before
