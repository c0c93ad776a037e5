"""A trained folder as one stored file, and back: how the registry keeps the core's output.

The core writes a folder (LoRA weights, token embeddings, a kohya export,
manifest.json). The registry stores it as one subject file (a gzip'd tar,
encrypted like every subject file), so a version is one asset that erasure
destroys at once, and a worker unpacks it into its scratch folder to load it.
Unpacking is defensive even though only this code ever packs: regular files
and folders only, no absolute paths or `..`, bounded size and count.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

MAX_FILES = 256
MAX_UNPACKED_BYTES = 4 * 1024**3  # an SDXL LoRA with its text encoders is a few hundred MB


class ArtifactError(ValueError):
    """The stored file is not a trained folder this code packed (or is damaged)."""


def pack_folder(folder: Path) -> bytes:
    """The folder's files, sorted, with fixed times and owners: the same folder packs to the same bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = archive.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o600
            with path.open("rb") as handle:
                archive.addfile(info, handle)
    return buffer.getvalue()


def unpack_to(data: bytes, destination: Path) -> Path:
    """Unpack a packed folder into `destination` (created); ArtifactError for anything unexpected."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = archive.getmembers()
            if len(members) > MAX_FILES:
                raise ArtifactError(f"the trained folder holds more than {MAX_FILES} files")
            if sum(member.size for member in members) > MAX_UNPACKED_BYTES:
                raise ArtifactError("the trained folder is larger than any this product writes")
            for member in members:
                name = PurePosixPath(member.name)
                if not (member.isfile() or member.isdir()) or name.is_absolute() or ".." in name.parts:
                    raise ArtifactError(f"unexpected entry in the trained folder: {member.name!r}")
            # The "data" filter refuses links, devices and paths leaving the destination, again.
            archive.extractall(destination, filter="data")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ArtifactError(f"the trained folder cannot be unpacked: {type(error).__name__}") from None
    return destination
