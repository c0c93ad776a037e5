"""How often the release watermark survives what happens to a released image on the way back to us.

    python bench/watermark_recovery.py                 # 50 tiny-model outputs, the default
    python bench/watermark_recovery.py --count 10 --faces ../shared/data/faces

Every image is a real output of the tiny model (`var/models/tiny-sd`, generated through the
core's API with its own seed), stamped as a release is (editing.provenance.stamp: upscale, mark,
XMP, signed manifest, each with its own release number), then read back by the verifier's code
(editing.provenance.stamp.inspect, given the released size) after each transformation: the exact
bytes, a JPEG re-encode at quality 90 (Pillow's default 4:2:0 chroma), a 50% downscale, and both.
A read counts only when it returns the number that was marked; `false` counts the reads of the
unmarked outputs that returned any number. `--faces` adds the face photos at 1024 px, as
stand-ins for real full-size outputs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from editing.provenance.certificates import ensure_dev_chain, load_signing_identity  # noqa: E402
from editing.provenance.stamp import inspect, stamp  # noqa: E402

TINY_MODEL = REPO_ROOT / "var" / "models" / "tiny-sd"
CLEARANCE = {
    "tenant_id": "1",
    "consent_record_id": "1",
    "consent_text_sha256": hashlib.sha256(b"bench").hexdigest(),
    "purposes": ["generate_images"],
    "channels": ["web"],
    "territories": ["EU"],
    "ends_at": "2030-01-01",
    "approver_id": "1",
}


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg_q90(data: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _half(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return _png(image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS))


TRANSFORMS: dict[str, Callable[[bytes], bytes]] = {
    "exact": lambda data: data,
    "jpeg q90": _jpeg_q90,
    "50% resize": _half,
    "both": lambda data: _half(_jpeg_q90(data)),
}


def tiny_outputs(count: int) -> list[bytes]:
    from personalization.generate import GenerationSettings, generate
    from personalization.models import load_pipeline

    pipe = load_pipeline(TINY_MODEL, device="cpu")
    images: list[bytes] = []
    while len(images) < count:
        batch = min(8, count - len(images))
        settings = GenerationSettings(
            prompt="a photo of a person", count=batch, steps=4, seed=1000 + len(images)
        )
        images.extend(_png(image) for image in generate(pipe, None, settings).images)
    return images


def measure(name: str, outputs: list[bytes], work: Path) -> None:
    ensure_dev_chain(work)
    signer = load_signing_identity(work / "chain.pem", key_path=work / "signer.key")
    recovered = dict.fromkeys(TRANSFORMS, 0)
    false_reads = 0
    started = time.perf_counter()
    for index, output in enumerate(outputs):
        number = 1_000_003 * (index + 1)
        released = stamp(
            output,
            kind="generation",
            release_id=number,
            clearance=CLEARANCE,
            source_photo_sha256=None,
            visible_label=False,
            signer=signer,
        )
        size = inspect(released).size
        for transform, apply in TRANSFORMS.items():
            recovered[transform] += inspect(apply(released), sizes=[size]).watermark == number
        false_reads += inspect(output, sizes=[size]).watermark is not None
    seconds = time.perf_counter() - started
    print(f"\n{name}: {len(outputs)} images, {seconds:.1f} s to stamp and read them all")
    print("| transformation | recovered | rate |")
    print("|---|---|---|")
    for transform, hits in recovered.items():
        print(f"| {transform} | {hits}/{len(outputs)} | {100 * hits / len(outputs):.0f}% |")
    print(f"| unmarked original (false reads) | {false_reads}/{len(outputs)} | |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=50, help="tiny-model outputs to release (default 50)")
    parser.add_argument("--faces", type=Path, help="also release the photos of this folder at 1024 px")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "var" / "bench" / "watermark")
    args = parser.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, Python {platform.python_version()}")
    measure("tiny model, 64 px outputs (released at 512 px)", tiny_outputs(args.count), args.work)
    if args.faces is not None:
        photos = sorted(args.faces.glob("*.jpg"))
        full_size = [_png(Image.open(path).convert("RGB").resize((1024, 1024))) for path in photos]
        measure("face photos at 1024 px", full_size, args.work)


if __name__ == "__main__":
    main()
