"""Helpers of the release tests: an output image like the tiny model's, approved through the real review."""

from __future__ import annotations

import datetime
import io
from typing import Any

import numpy as np
from django.utils import timezone
from PIL import Image

from consent.models import ConsentRecord
from editing import review
from editing.models import Output, OutputKind, Release
from editing.releases import actions
from tests.editing.isolation_factories import output_for


def model_like_png(seed: int = 0, size: int = 64) -> bytes:
    """A 64 px image with smooth shapes and grain, as the tiny model's outputs look (not a flat colour)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([x * 200 + 30, y * 160 + 50, (1 - x) * 120 + 60], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def approved_output(
    record: ConsentRecord, approver: Any, kind: OutputKind = OutputKind.GENERATION, seed: int = 0
) -> Output:
    """A pending output decided by editing.review.approve_outputs, as staff approve one in the queue."""
    output = output_for(record, kind, image_bytes=model_like_png(seed))
    [decision] = review.approve_outputs(actor=approver, tenant=record.tenant, output_ids=[output.pk])
    assert decision.decided, decision
    output.refresh_from_db()
    return output


def pixels(data: bytes) -> np.ndarray[Any, Any]:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def release_of(staff: Any, output: Output, **scope: Any) -> Release:
    """create_release for 30 days on the web in the US (a scope every test consent allows), or `scope`."""
    ends_at = timezone.localdate() + datetime.timedelta(days=30)
    wanted = {"campaign": "Spring 2027", "channels": ["web"], "territories": ["US"], "ends_at": ends_at}
    return actions.create_release(actor=staff, output=output, **{**wanted, **scope})
