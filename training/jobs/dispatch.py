"""The fair queue: which queued job goes to a GPU worker next, and each waiting job's place in line.

Jobs wait in the database, not in the broker. The broker holds only as many
jobs as there are GPU slots (LIKENESS_JOB_SLOTS, one per GPU worker process),
so the order in which work starts is decided here, where it can be fair:

- a tenant never has more than LIKENESS_TENANT_MAX_CONCURRENT_JOBS jobs running
  or handed over at once;
- among tenants with room, the one that was served least lately goes first
  (jobs in flight plus jobs started within LIKENESS_FAIR_SHARE_MINUTES), then
  the one whose next job has waited longest; within a tenant, oldest first.

So a tenant that queues a hundred jobs gets one slot at a time in turn with the
others, and the lone job of another tenant starts as soon as a slot frees up.
`dispatch_jobs()` runs when a job is queued or ends (on commit), and every
half-minute from beat, under one lock so two dispatchers never hand out the
same slot twice.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from tenancy.models import Tenant
from training.jobs.lifecycle import mark_dispatched
from training.models import Job, JobStatus

logger = logging.getLogger(__name__)

# An arbitrary constant naming the dispatcher's PostgreSQL advisory lock.
_DISPATCH_LOCK_KEY = 0x4C4B4E4A  # "LKNJ"


@dataclass(frozen=True)
class Waiting:
    job_id: int
    tenant_id: int
    created_at: datetime


def fair_order(waiting: Iterable[Waiting], served: Counter[int]) -> list[Waiting]:
    """Every waiting job in the order the slots would go to them (ignoring the per-tenant cap).

    Round robin weighted by recent service: repeatedly the tenant served least
    (`served`: its jobs in flight and started lately, plus those placed earlier
    in this order) gives its oldest job; ties go to the tenant whose next job
    has waited longest.
    """
    queues: dict[int, deque[Waiting]] = defaultdict(deque)
    for item in sorted(waiting, key=lambda w: (w.created_at, w.job_id)):
        queues[item.tenant_id].append(item)
    load = Counter({tenant_id: served.get(tenant_id, 0) for tenant_id in queues})
    order = []
    while queues:
        tenant_id = min(queues, key=lambda t: (load[t], queues[t][0].created_at, queues[t][0].job_id))
        order.append(queues[tenant_id].popleft())
        load[tenant_id] += 1
        if not queues[tenant_id]:
            del queues[tenant_id]
    return order


def _waiting() -> list[Waiting]:
    rows = Job.dangerously_unscoped.filter(status=JobStatus.QUEUED, dispatched_at__isnull=True).values_list(
        "pk", "tenant_id", "created_at"
    )
    return [Waiting(job_id, tenant_id, created_at) for job_id, tenant_id, created_at in rows]


def _in_flight() -> Counter[int]:
    """Jobs holding a slot: running, or handed to the broker and not started yet."""
    busy = Job.dangerously_unscoped.filter(status=JobStatus.RUNNING) | Job.dangerously_unscoped.filter(
        status=JobStatus.QUEUED, dispatched_at__isnull=False
    )
    return Counter(busy.values_list("tenant_id", flat=True))


def _served_lately() -> Counter[int]:
    """Per tenant, the jobs holding a slot or started within the fair-share window: who had the GPUs."""
    since = timezone.now() - timedelta(minutes=settings.LIKENESS_FAIR_SHARE_MINUTES)
    rows = Job.dangerously_unscoped.filter(
        Q(started_at__gte=since)
        | Q(status=JobStatus.RUNNING)
        | Q(status=JobStatus.QUEUED, dispatched_at__isnull=False)
    )
    return Counter(rows.values_list("tenant_id", flat=True))


def _take_lock() -> None:
    """Serialise dispatchers: on PostgreSQL an advisory lock held to the end of the transaction;
    SQLite runs one write transaction at a time already (IMMEDIATE mode, config.settings)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_DISPATCH_LOCK_KEY])


def _send(tokens: dict[int, str]) -> None:
    from training.tasks import run_job_task

    for job_id, token in tokens.items():
        run_job_task.apply_async(args=(job_id, token), queue="gpu")


def dispatch_jobs() -> list[int]:
    """Hand the next fair jobs to the broker while GPU slots are free; the ids handed over."""
    with transaction.atomic():
        _take_lock()
        in_flight = _in_flight()
        free = settings.LIKENESS_JOB_SLOTS - sum(in_flight.values())
        if free <= 0:
            return []
        cap = settings.LIKENESS_TENANT_MAX_CONCURRENT_JOBS
        chosen: list[int] = []
        for item in fair_order(_waiting(), _served_lately()):
            if len(chosen) == free:
                break
            if in_flight[item.tenant_id] >= cap:
                continue
            chosen.append(item.job_id)
            in_flight[item.tenant_id] += 1
        if not chosen:
            return []
        tokens = mark_dispatched(chosen, timezone.now())
        # The messages leave only once the tokens they carry are committed.
        transaction.on_commit(lambda: _send(tokens))
    logger.info("dispatched jobs %s", chosen)
    return chosen


def queue_positions(tenant: Tenant) -> dict[int, int]:
    """Place in line (1 = next) of the tenant's waiting jobs, across every tenant's waiting jobs."""
    order = fair_order(_waiting(), _served_lately())
    positions = {}
    for place, item in enumerate(order, start=1):
        if item.tenant_id == tenant.pk:
            positions[item.job_id] = place
    return positions
