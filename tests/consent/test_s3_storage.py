"""The S3 backend (LIKENESS_STORAGE_BACKEND=s3) end to end, against moto's S3 server over HTTP.

No S3 is reachable from here, so moto's server stands in for it: boto3 and django-storages run
their real code against a real HTTP endpoint speaking the S3 API. What is checked is what the
compliance rules need of any backend: only ciphertext is stored, it opens only through the
vault, no URL is ever handed out, and erasure leaves no object of the subject behind (S3 has no
folders: the erasure's sweep relies on prefix listings).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from consent import actions, vault
from consent.models import Asset, Subject
from consent.storage import private_storage, subject_prefix
from tests.fixtures.consent import NamedBytes
from tests.support import S3_CREDENTIALS, moto_s3

from . import photos

pytestmark = pytest.mark.django_db

BUCKET = "likeness-private"
PREFIX = "likeness-test"
CREDENTIALS = S3_CREDENTIALS


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str, storage_root: Any, settings: Any) -> Any:
    """The private storage switched to S3 (after the filesystem default the autouse fixture set)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "likeness_private": {
            "BACKEND": "consent.s3storage.PrivateS3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "location": PREFIX,
                "endpoint_url": s3_endpoint,
                "access_key": CREDENTIALS["aws_access_key_id"],
                "secret_key": CREDENTIALS["aws_secret_access_key"],
                "region_name": CREDENTIALS["region_name"],
                "default_acl": "private",
                "file_overwrite": False,
            },
        },
    }
    return boto3.client("s3", endpoint_url=s3_endpoint, **CREDENTIALS)


def _objects(client: Any, subject: Subject) -> dict[str, bytes]:
    listed = client.list_objects_v2(
        Bucket=BUCKET, Prefix=f"{PREFIX}/{subject_prefix(subject.tenant_id, subject.pk)}/"
    )
    return {
        item["Key"]: client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        for item in listed.get("Contents", [])
    }


def test_subject_files_on_s3_are_ciphertext_without_urls_and_erasure_leaves_nothing(
    s3: Any, make_subject, sign, staff, admin
) -> None:
    subject = make_subject()
    sign(subject)
    actions.set_enrollment_photo(
        actor=staff, subject=subject, upload=NamedBytes(photos.photo_bytes("obama.jpg"), "enrollment.jpg")
    )
    report = actions.upload_reference_photos(
        actor=staff, subject=subject, uploads=[NamedBytes(photos.photo_bytes("obama2.jpg"), "second.jpg")]
    )
    assert not report.rejected
    stored = _objects(s3, subject)
    assets = list(Asset.objects.for_tenant(subject.tenant).filter(subject=subject))
    assert len(stored) == len(assets) >= 2
    for asset in assets:
        body = stored[f"{PREFIX}/{asset.storage_name}"]
        plaintext = vault.read_asset(asset)  # photos and face embeddings, as they were handed in
        assert len(plaintext) == asset.size_bytes and plaintext[:2] in (b"\xff\xd8", b"\x93N")
        assert body.startswith(b"LKNE") and plaintext[:64] not in body and b"JFIF" not in body
        with pytest.raises(NotImplementedError, match="no URL"):
            private_storage().url(asset.storage_name)

    certificate = actions.erase_subject(actor=admin, subject=subject, reason="Art. 17 request by e-mail")
    assert certificate is not None
    done = actions.complete_erasure(certificate.pk)
    assert done is not None and done.files_destroyed == len(stored)
    assert _objects(s3, subject) == {}
