"""The job's live socket, /ws/jobs/<id>/: the stored snapshot on connect, then every published update."""

from __future__ import annotations

from typing import Any

from tenancy.realtime import TenantObjectConsumer
from training.jobs.progress import snapshot
from training.models import Job


class JobConsumer(TenantObjectConsumer):
    """Authenticated, tenant- and permission-checked before it joins the job's group (tenancy.realtime)."""

    model = Job
    permission = "training.view_job"

    def snapshot(self, obj: Any) -> dict[str, Any]:
        return snapshot(obj)
