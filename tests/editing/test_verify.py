"""Verify (page and API): a released image is found from its exact bytes, a JPEG re-encode at quality 90
and a 50% resize; its owner's members see the release and why it is not valid; anyone else sees only
"a release of this platform, valid / not valid"."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from audit.models import AuditEntry
from consent import vault
from consent.models import ConsentRecord
from editing import review
from tenancy.models import Role
from tests.editing.releases import approved_output, model_like_png, release_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("release_signing")]


@pytest.fixture
def released(record: ConsentRecord, staff: Any) -> tuple[Any, bytes]:
    output = approved_output(record, staff, seed=3)
    release = release_of(staff, output)
    assert release.file is not None
    return release, vault.read_asset(release.file)


def _jpeg(data: bytes, quality: int = 90, scale: float = 1.0) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        picture = image.convert("RGB")
    if scale != 1.0:
        picture = picture.resize(
            (round(picture.width * scale), round(picture.height * scale)), Image.Resampling.LANCZOS
        )
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _png(data: bytes, scale: float) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        picture = image.convert("RGB")
    picture = picture.resize(
        (round(picture.width * scale), round(picture.height * scale)), Image.Resampling.LANCZOS
    )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _post(client: Any, data: bytes, name: str = "upload.jpg") -> Any:
    return client.post("/api/v1/verify/", {"image": SimpleUploadedFile(name, data)}, format="multipart")


@pytest.mark.parametrize(
    ("copy", "matched_by"),
    [
        ("exact", "sha256"),
        ("jpeg_q90", "watermark"),
        ("half_size", "watermark"),
    ],
)
def test_the_owner_finds_a_release_from_its_bytes_a_reencode_and_a_resize(
    copy: str,
    matched_by: str,
    released: tuple[Any, bytes],
    record: ConsentRecord,
    staff: Any,
    api_client_for: Callable[..., Any],
) -> None:
    release, data = released
    upload = {"exact": data, "jpeg_q90": _jpeg(data, 90), "half_size": _png(data, 0.5)}[copy]

    answer = _post(api_client_for(staff, record.tenant), upload)

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["found"], body["valid"], body["matched_by"]) == (True, True, matched_by)
    assert body["release"]["id"] == release.pk and body["subject_name"] == "Maya Example"
    assert body["release"]["channels"] == ["web"] and body["code"] == ""
    entry = AuditEntry.objects.for_tenant(record.tenant).get(action="release.verified")
    assert entry.payload == {
        "subject_id": record.subject_id,
        "release_id": release.pk,
        "matched_by": matched_by,
        "valid": True,
        "by_member": True,
    }


def test_the_owner_learns_why_a_release_is_not_valid_and_a_foreign_user_only_that_it_is_not(
    released: tuple[Any, bytes],
    record: ConsentRecord,
    staff: Any,
    member: Callable[..., Any],
    tenant_factory: Callable[..., Any],
    api_client_for: Callable[..., Any],
    client_for: Callable[..., Any],
) -> None:
    release, data = released
    review.veto_output(link=record.link, output_id=release.output_id)
    other = tenant_factory(name="Other Brand")
    outsider = member(other, Role.ADMIN)

    mine = _post(api_client_for(staff, record.tenant), data).json()
    theirs = _post(api_client_for(outsider, other), _jpeg(data)).json()

    assert (mine["found"], mine["valid"], mine["code"]) == (True, False, "output_vetoed")
    assert "vetoed" in mine["reason"]
    assert theirs == {"found": True, "valid": False}
    page = client_for(outsider, other).post("/verify/", {"image": SimpleUploadedFile("a.jpg", data)})
    html = page.content.decode()
    assert page.status_code == 200 and 'id="verify-public"' in html and "Not valid" in html
    for secret in ("Maya Example", "Spring 2027", release.sha256):
        assert secret not in html
    own_page = client_for(staff, record.tenant).post("/verify/", {"image": SimpleUploadedFile("a.png", data)})
    own_html = own_page.content.decode()
    assert "Maya Example" in own_html and "Vetoed" in own_html and "vetoed by the person" in own_html
    foreign = AuditEntry.objects.for_tenant(record.tenant).filter(action="release.verified", actor=None)
    assert [entry.payload["by_member"] for entry in foreign] == [False, False]


def test_an_unknown_image_is_not_found_and_anything_but_an_image_is_a_400(
    released: tuple[Any, bytes],
    record: ConsentRecord,
    staff: Any,
    api_client_for: Callable[..., Any],
    settings: Any,
) -> None:
    client = api_client_for(staff, record.tenant)
    assert _post(client, model_like_png(seed=99), "other.png").json() == {"found": False, "valid": False}
    refused = _post(client, b"%PDF-1.7 not an image", "a.pdf")
    assert refused.status_code == 400 and "JPEG and PNG" in refused.json()["image"][0]
    bomb = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(bomb, format="PNG")  # 400 megapixels in about 50 KB
    assert "not a readable JPEG or PNG" in _post(client, bomb.getvalue(), "bomb.png").json()["image"][0]
    settings.LIKENESS_MAX_IMAGE_PIXELS = 1000
    assert "more than 1000 pixels" in _post(client, _jpeg(released[1]), "big.jpg").json()["image"][0]
    settings.LIKENESS_MAX_UPLOAD_BYTES = 100
    assert "larger than" in _post(client, released[1]).json()["image"][0]
    assert not AuditEntry.objects.for_tenant(record.tenant).filter(action="release.verified").exists()


def test_verify_needs_an_account(released: tuple[Any, bytes], client: Any) -> None:
    from rest_framework.test import APIClient

    assert _post(APIClient(), released[1]).status_code in (401, 403)
    assert client.get("/verify/").status_code == 302


def test_a_manifest_counts_only_when_signed_by_a_trusted_platform_chain_with_the_registrys_clearance(
    released: tuple[Any, bytes], tmp_path: Any
) -> None:
    """A file the platform signed with this release's clearance is found by its manifest; the same manifest
    signed by anyone else's chain is not (only the watermark, a lookup key, still points at the release)."""
    from editing.provenance.certificates import ensure_dev_chain, load_signing_identity
    from editing.provenance.stamp import stamp
    from editing.releases import clearance, verify

    release, _ = released
    fields = {name: value for name, value in release.clearance.items() if name != "release_id"}

    def stamped(signer: Any) -> bytes:
        return stamp(
            model_like_png(seed=11),
            kind="generation",
            release_id=release.pk,
            clearance=fields,
            source_photo_sha256=None,
            visible_label=False,
            signer=signer,
        )

    ensure_dev_chain(tmp_path)
    stranger = load_signing_identity(tmp_path / "chain.pem", key_path=tmp_path / "signer.key")
    assert verify.find_release(stamped(clearance.platform_signer())) == (release, "manifest")
    assert verify.find_release(stamped(stranger)) == (release, "watermark")
