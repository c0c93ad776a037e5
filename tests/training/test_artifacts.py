"""Packing a trained folder into one stored file and back."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from training.artifacts import ArtifactError, pack_folder, unpack_to


def _folder(root: Path) -> Path:
    (root / "embeddings").mkdir(parents=True)
    (root / "pytorch_lora_weights.safetensors").write_bytes(b"\x00lora" * 100)
    (root / "embeddings" / "identity.safetensors").write_bytes(b"emb")
    (root / "manifest.json").write_text('{"format_version": 1}')
    return root


def test_a_folder_round_trips_and_packs_to_the_same_bytes(tmp_path):
    folder = _folder(tmp_path / "trained")
    packed = pack_folder(folder)
    assert packed == pack_folder(folder)
    out = unpack_to(packed, tmp_path / "out")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "embeddings/identity.safetensors",
        "manifest.json",
        "pytorch_lora_weights.safetensors",
    ]
    assert (out / "pytorch_lora_weights.safetensors").read_bytes() == b"\x00lora" * 100


def _archive(*entries: tarfile.TarInfo) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for entry in entries:
            archive.addfile(entry, io.BytesIO(b"x" * entry.size) if entry.isfile() else None)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "entry",
    [
        tarfile.TarInfo("../escape.txt"),
        tarfile.TarInfo("/etc/passwd-copy"),
    ],
    ids=["parent", "absolute"],
)
def test_entries_that_leave_the_folder_are_refused(tmp_path, entry):
    entry.size = 1
    with pytest.raises(ArtifactError):
        unpack_to(_archive(entry), tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_links_and_garbage_are_refused(tmp_path):
    link = tarfile.TarInfo("manifest.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(ArtifactError, match="unexpected entry"):
        unpack_to(_archive(link), tmp_path / "out")
    with pytest.raises(ArtifactError, match="cannot be unpacked"):
        unpack_to(b"not a tar at all", tmp_path / "out2")
