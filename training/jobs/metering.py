"""Usage metering: what each job cost (wall and device seconds, peak memory, steps), summed per month.

Every job records its own figures when it ends (training.jobs.lifecycle); this
module measures peak memory while it runs and sums a tenant's month per kind,
the base for a cost per tenant.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db.models import Count, Max, Sum

from tenancy.models import Tenant
from training.models import Job, JobStatus

_PAGE_BYTES = 4096


def _resident_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 where it cannot be read)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * _PAGE_BYTES


def _cuda_peak_bytes() -> int:
    """Peak CUDA memory allocated by this process, when torch is loaded and has a GPU (0 otherwise)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return 0
    return int(torch.cuda.max_memory_allocated())


class MemorySampler:
    """The highest memory seen while a job runs: device memory on a GPU, resident memory on the CPU."""

    def __init__(self) -> None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
        self.peak_bytes = 0
        self.sample()

    def sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, _cuda_peak_bytes() or _resident_bytes())


@dataclass(frozen=True)
class Month:
    start: datetime
    end: datetime
    label: str

    @classmethod
    def parse(cls, text: str) -> Month:
        """A calendar month from "YYYY-MM" (UTC); ValueError with the expected form otherwise."""
        try:
            start = datetime.strptime(text.strip(), "%Y-%m").replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(f"month must look like 2026-12, not {text[:20]!r}.") from None
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return cls(start=start, end=end, label=start.strftime("%Y-%m"))

    @classmethod
    def current(cls) -> Month:
        return cls.parse(datetime.now(UTC).strftime("%Y-%m"))


def _figures(rows: dict[str, Any]) -> dict[str, Any]:
    return {
        "jobs": rows["jobs"] or 0,
        "wall_seconds": round(rows["wall_seconds"] or 0.0, 3),
        "device_seconds": round(rows["device_seconds"] or 0.0, 3),
        "steps": rows["steps"] or 0,
        "peak_memory_bytes": rows["peak_memory_bytes"] or 0,
    }


def usage(tenant: Tenant, month: Month) -> dict[str, Any]:
    """The tenant's jobs that ended in `month`, summed per kind and in total (one query per grouping)."""
    ended = Job.objects.for_tenant(tenant).filter(
        finished_at__gte=month.start,
        finished_at__lt=month.end,
        status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED],
    )
    sums = {
        "jobs": Count("id"),
        "wall_seconds": Sum("wall_seconds"),
        "device_seconds": Sum("device_seconds"),
        "steps": Sum("steps_done"),
        "peak_memory_bytes": Max("peak_memory_bytes"),
    }
    by_kind = {row["kind"]: _figures(row) for row in ended.values("kind").annotate(**sums).order_by("kind")}
    return {
        "month": month.label,
        "tenant": tenant.slug,
        "by_kind": by_kind,
        "total": _figures(ended.aggregate(**sums)),
    }
