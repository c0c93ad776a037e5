"""The provenance layers of a released image, read back with the real libraries (c2pa-python, Pillow).

Images are real: the tiny model's outputs (generated here through the core's API, as a release
gets them) and a face photo from ../shared/data/faces for an edit's source and a 1024 px output.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import c2pa as c2pa_python
import numpy as np
import pytest
from PIL import Image

from editing.provenance import c2pa, label, watermark, xmp
from editing.provenance.certificates import SigningIdentity, ensure_dev_chain, load_signing_identity
from editing.provenance.stamp import inspect, stamp
from tests.consent import photos

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL = REPO_ROOT / "var" / "models" / "tiny-sd"
RELEASE = 3_000_000_007
CONSENT_TEXT_SHA256 = hashlib.sha256(b"I agree to ...").hexdigest()
CLEARANCE = {
    "tenant_id": "41",
    "consent_record_id": "812",
    "consent_text_sha256": CONSENT_TEXT_SHA256,
    "purposes": ["generate_images"],
    "channels": ["web", "print"],
    "territories": ["FR", "DE"],
    "ends_at": "2027-06-30",
    "approver_id": "17",
}


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> SigningIdentity:
    directory = tmp_path_factory.mktemp("certs")
    ensure_dev_chain(directory)
    return load_signing_identity(directory / "chain.pem", key_path=directory / "signer.key")


@pytest.fixture(scope="module")
def tiny_outputs() -> list[bytes]:
    """Two PNG outputs of the tiny model (64 px), generated as a generation job does."""
    from personalization.generate import GenerationSettings, generate
    from personalization.models import load_pipeline

    pipe = load_pipeline(TINY_MODEL, device="cpu")
    result = generate(pipe, None, GenerationSettings(prompt="a photo of a person", count=2, steps=2, seed=11))
    outputs = []
    for image in result.images:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        outputs.append(buffer.getvalue())
    return outputs


def as_jpeg(data: bytes, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def halved(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    buffer = io.BytesIO()
    image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS).save(buffer, "PNG")
    return buffer.getvalue()


def flip_image_data_byte(data: bytes) -> bytes:
    """One bit changed in the compressed pixels, near the end of the file (after the manifest)."""
    changed = bytearray(data)
    changed[-64] ^= 0x01
    return bytes(changed)


def release(
    output: bytes,
    signer: SigningIdentity,
    *,
    kind: Literal["generation", "edit"] = "generation",
    clearance: Mapping[str, object] = CLEARANCE,
    source_photo_sha256: str | None = None,
    visible_label: bool = False,
) -> bytes:
    """`output` stamped as release RELEASE, as the release gate will call it."""
    return stamp(
        output,
        kind=kind,
        release_id=RELEASE,
        clearance=clearance,
        source_photo_sha256=source_photo_sha256,
        visible_label=visible_label,
        signer=signer,
    )


@pytest.mark.parametrize("encoding", ["PNG", "JPEG"])
def test_a_stamped_generation_reads_back_valid_with_its_action_source_type_and_clearance(
    tiny_outputs: list[bytes], signer: SigningIdentity, encoding: str
) -> None:
    output = tiny_outputs[0] if encoding == "PNG" else as_jpeg(tiny_outputs[0], 95)

    released = release(output, signer)

    found = inspect(released)
    assert found.mime_type == f"image/{encoding.lower()}"
    assert found.manifest.present and found.manifest.valid, found.manifest.codes
    assert found.manifest.state == "Valid"  # the development root is in no trust list
    assert found.manifest.actions == ("c2pa.created",)
    assert found.manifest.digital_source_type == c2pa.TRAINED_ALGORITHMIC_MEDIA
    assert found.manifest.ingredient_sha256 == ()
    assert found.manifest.clearance == {**CLEARANCE, "release_id": str(RELEASE)}
    assert found.manifest.signer == "Likeness development C2PA signer"
    assert found.xmp_source_type == c2pa.TRAINED_ALGORITHMIC_MEDIA
    assert found.watermark == RELEASE


def test_a_stamped_edit_names_its_source_photo_by_hash_and_carries_none_of_it(
    signer: SigningIdentity,
) -> None:
    source = photos.photo_bytes("obama2.jpg", 800)
    source_sha256 = hashlib.sha256(source).hexdigest()
    edited = photos.photo_bytes("obama.jpg", 700)

    released = release(
        edited,
        signer,
        kind="edit",
        clearance={**CLEARANCE, "purposes": ["edit_photos"]},
        source_photo_sha256=source_sha256,
    )

    report = c2pa.read(released)
    assert report.valid, report.codes
    assert report.actions == ("c2pa.opened", "c2pa.edited")
    assert report.digital_source_type == c2pa.COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
    assert report.ingredient_sha256 == (source_sha256,)
    assert report.clearance is not None and report.clearance["purposes"] == ["edit_photos"]
    assert xmp.read_source_type(released) == c2pa.COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
    # The ingredient is a description: no thumbnail, no embedded data, no manifest of the photo.
    with c2pa_python.Reader("image/jpeg", io.BytesIO(released)) as reader:
        store = json.loads(reader.json())
    (ingredient,) = store["manifests"][store["active_manifest"]]["ingredients"]
    assert set(ingredient) == {"title", "instance_id", "relationship", "label"}
    assert ingredient["instance_id"] == f"sha256:{source_sha256}"


@pytest.mark.parametrize("encoding", ["PNG", "JPEG"])
def test_one_changed_byte_in_the_image_data_reads_back_invalid(
    tiny_outputs: list[bytes], signer: SigningIdentity, encoding: str
) -> None:
    output = tiny_outputs[1] if encoding == "PNG" else as_jpeg(tiny_outputs[1], 95)
    released = release(output, signer)
    assert c2pa.read(released).valid

    report = c2pa.read(flip_image_data_byte(released))

    assert report.present and not report.valid
    assert report.state == "Invalid"
    assert "assertion.dataHash.mismatch" in report.codes


def test_a_changed_xmp_packet_makes_the_manifest_invalid(
    tiny_outputs: list[bytes], signer: SigningIdentity
) -> None:
    released = release(tiny_outputs[0], signer)
    relabelled = released.replace(
        b"trainedAlgorithmicMedia", b"digitalCapture\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    )

    assert relabelled != released
    assert not c2pa.read(relabelled).valid


def test_the_watermark_survives_jpeg_q90_a_half_resize_and_both_at_tiny_and_full_size(
    tiny_outputs: list[bytes], signer: SigningIdentity
) -> None:
    full_size = io.BytesIO()
    Image.open(io.BytesIO(photos.original_bytes("obama3.jpg"))).convert("RGB").resize((1024, 1024)).save(
        full_size, "PNG"
    )
    for output in (tiny_outputs[0], full_size.getvalue()):
        released = release(output, signer, visible_label=True)
        size = inspect(released).size
        copies = {
            "jpeg q90": as_jpeg(released, 90),
            "50% resize": halved(released),
            "both": halved(as_jpeg(released, 90)),
        }
        for name, copy in copies.items():
            found = inspect(copy, sizes=[size])
            assert not found.manifest.present, name  # a re-save strips the manifest ...
            assert found.watermark == RELEASE, name  # ... the watermark stays


def test_an_unmarked_image_reads_no_watermark_and_no_manifest(tiny_outputs: list[bytes]) -> None:
    face = photos.photo_bytes("biden.jpg", 1024)

    for data in (tiny_outputs[0], face):
        found = inspect(data, sizes=[(512, 512), (1024, 1024)])
        assert found.watermark is None
        assert not found.manifest.present
        assert found.xmp_source_type is None


def test_a_tiny_output_is_released_upscaled_to_the_watermark_size(
    tiny_outputs: list[bytes], signer: SigningIdentity
) -> None:
    assert Image.open(io.BytesIO(tiny_outputs[0])).size == (64, 64)

    released = release(tiny_outputs[0], signer)

    assert Image.open(io.BytesIO(released)).size == (watermark.MIN_SIDE, watermark.MIN_SIDE)


def test_the_visible_label_is_a_dark_box_with_light_text_in_the_bottom_right_corner() -> None:
    image = Image.open(io.BytesIO(photos.photo_bytes("obama.jpg", 1024))).convert("RGB")

    labelled = np.asarray(label.apply(image), dtype=np.int16)
    original = np.asarray(image, dtype=np.int16)

    changed = np.argwhere(np.abs(labelled - original).sum(axis=2) > 0)
    height, width = original.shape[:2]
    assert changed[:, 0].min() > height * 0.8 and changed[:, 1].min() > width * 0.5
    corner = labelled[int(height * 0.85) :, int(width * 0.5) :]
    assert (corner.min(axis=2) > 230).sum() > 200  # white glyphs
    assert labelled.shape == original.shape


def test_the_clearance_takes_opaque_ids_and_scope_only(
    tiny_outputs: list[bytes], signer: SigningIdentity
) -> None:
    def attempt(clearance: Mapping[str, object]) -> None:
        release(tiny_outputs[0], signer, clearance=clearance)

    with pytest.raises(c2pa.ProvenanceError, match="unknown fields"):
        attempt({**CLEARANCE, "subject_name": "Barack Obama"})
    with pytest.raises(c2pa.ProvenanceError, match="lacks"):
        attempt({key: value for key, value in CLEARANCE.items() if key != "approver_id"})
    with pytest.raises(c2pa.ProvenanceError, match="ends_at"):
        attempt({**CLEARANCE, "ends_at": "next year"})
    with pytest.raises(c2pa.ProvenanceError, match="another release"):
        attempt({**CLEARANCE, "release_id": "9"})
    with pytest.raises(c2pa.ProvenanceError, match="source photo"):
        release(tiny_outputs[0], signer, kind="edit")


def test_anything_but_jpeg_or_png_is_refused_with_a_reason() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (600, 600)).save(buffer, "WEBP")

    with pytest.raises(c2pa.ProvenanceError, match="JPEG and PNG"):
        inspect(buffer.getvalue())
    with pytest.raises(c2pa.ProvenanceError, match="not a readable"):
        inspect(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)


def test_a_manifest_read_with_the_platform_root_as_trust_anchor_is_trusted(
    tiny_outputs: list[bytes], tmp_path: Path
) -> None:
    ensure_dev_chain(tmp_path)
    identity = load_signing_identity(tmp_path / "chain.pem", key_path=tmp_path / "signer.key")
    released = release(tiny_outputs[0], identity)

    report = c2pa.read(released, trust_anchors_pem=(tmp_path / "root.pem").read_bytes())

    assert report.trusted and report.state == "Trusted"
    assert json.dumps(report.clearance)  # plain JSON, as the registry stores it


def test_a_truncated_release_reads_back_as_not_valid_without_raising(
    tiny_outputs: list[bytes], signer: SigningIdentity
) -> None:
    released = release(as_jpeg(tiny_outputs[0], 95), signer)

    report = c2pa.read(released[: len(released) // 3])

    assert not report.valid and report.state == "Invalid"
    assert report.codes and report.codes[0].startswith("c2pa.error.")
