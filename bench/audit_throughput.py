"""Audit log throughput: audited writes by one writer, and chain verification, in entries per second.

    python bench/audit_throughput.py [--writes 3000] [--entries 100000] [--database-url URL]

In a fresh database of its own (see bench/platform_common.py) it
- appends `--writes` entries through `audit.actions.record()`, each in its own transaction
  (autocommit, one writer): what every audited action pays on top of its own write;
- fills the chain up to `--entries` with bulk-inserted entries, hashed by the same `audit.chain`
  functions record() uses (through record() 100,000 entries take minutes and measure nothing
  new), with payloads shaped like the consent actions' (IDs, purposes, versions);
- verifies the chain in process as `manage.py verify_audit` does (`verify_chain`: the walk, the
  head, the entry count; no checkpoints in this fresh database) and times the walk alone.
Goals (issue 14): verification >= 100,000 entries/s, audited writes >= 300/s for one writer.
Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.platform_common import bench_database_url, fresh_database, machine, setup_django, table

VERIFY_GOAL, WRITE_GOAL = 100_000, 300
BULK_BATCH = 5000


def _payload(n: int) -> tuple[str, str, str, dict[str, object]]:
    """(action, target_type, target_id, payload) in the shapes the consent actions write."""
    kind = n % 4
    if kind == 0:
        return (
            "subject.created",
            "consent.subject",
            str(n),
            {"retention_schedule_id": 1, "retention_version": 1},
        )
    if kind == 1:
        return (
            "consent.link_sent",
            "consent.consentlink",
            str(n),
            {"subject_id": n, "template_id": 1, "purposes": ["training", "generation", "editing"]},
        )
    if kind == 2:
        return (
            "consent.signed",
            "consent.consentrecord",
            str(n),
            {"subject_id": n, "record_id": n, "version": 2},
        )
    return "consent.checked", "", "", {"subject_id": n, "purpose": "training", "allowed": True}


def measure_writes(tenant: object, count: int, per_transaction: int) -> tuple[float, float]:
    """(wall, CPU) entries per second appended by one writer, `per_transaction` record() calls per commit.

    One per commit is what an audited action pays: its commit waits for the WAL to reach the disk.
    Many per commit shows what record() costs without that wait.
    """
    from django.db import transaction

    from audit.actions import record

    start, cpu = time.perf_counter(), time.process_time()
    for first in range(0, count, per_transaction):
        with transaction.atomic():
            for n in range(first, min(count, first + per_transaction)):
                action, target_type, target_id, payload = _payload(n)
                record(
                    tenant=tenant,  # type: ignore[arg-type]
                    action=action,
                    target_type=target_type or None,
                    target_id=target_id or None,
                    payload=payload,
                )
    return count / (time.perf_counter() - start), count / (time.process_time() - cpu)


def fill_chain(tenant_id: int, entries: int) -> None:
    """Append entries up to `entries` in bulk, chained exactly as record() chains them, then move the head."""
    from django.db import transaction
    from django.utils import timezone
    from tqdm import tqdm

    from audit.chain import canonical_entry, chain_hash, subject_reference
    from audit.models import AuditChainHead, AuditEntry

    head = AuditChainHead.objects.get(tenant_id=tenant_id)
    seq, prev_hash = head.last_seq, head.last_hash
    at = timezone.now()
    with tqdm(total=entries - seq, desc="bulk entries", unit="entry") as bar:
        while seq < entries:
            batch = []
            for _ in range(min(BULK_BATCH, entries - seq)):
                seq += 1
                action, target_type, target_id, payload = _payload(seq)
                fields = {
                    "tenant_id": tenant_id,
                    "seq": seq,
                    "at": at + timedelta(microseconds=seq),
                    "actor_id": None,
                    "action": action,
                    "target_type": target_type,
                    "target_id": target_id,
                    "payload": payload,
                }
                digest = chain_hash(prev_hash, canonical_entry(**fields))  # type: ignore[arg-type]
                ref = subject_reference(target_type, target_id, payload)
                batch.append(AuditEntry(**fields, subject_ref=ref, prev_hash=prev_hash, hash=digest))
                prev_hash = digest
            with transaction.atomic():
                AuditEntry.objects.bulk_create(batch)
                AuditChainHead.objects.filter(tenant_id=tenant_id).update(last_seq=seq, last_hash=prev_hash)
            bar.update(len(batch))


def verify_rate(entries: int, repeats: int, call: Callable[[], object]) -> tuple[float, float]:
    """(best wall, best CPU) entries per second over `repeats` calls: on a shared machine other jobs
    only ever add time. CPU is this process's alone (the database server's work is not in it)."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        call()
        wall.append(entries / (time.perf_counter() - start))
        cpu.append(entries / (time.process_time() - cpu_start))
    return max(wall), max(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=bench_database_url("likeness_bench_audit"))
    parser.add_argument("--writes", type=int, default=3000, help="entries appended through record()")
    parser.add_argument("--entries", type=int, default=100_000, help="chain length to verify")
    parser.add_argument("--repeats", type=int, default=3, help="verification runs")
    args = parser.parse_args(argv)
    if not 1 <= args.writes <= args.entries:
        parser.error("need 1 <= --writes <= --entries")

    fresh_database(args.database_url)
    setup_django(args.database_url, migrate=True)
    from audit.verification import ChainStatus, verify_chain
    from audit.walk import walk_chain
    from tenancy.actions.tenants import create_tenant

    where = machine()
    tenant = create_tenant(name="Bench Audit", slug="bench-audit")
    half = (args.writes - 1) // 2  # create_tenant wrote entry 1
    single = measure_writes(tenant, half, per_transaction=1)
    batched = measure_writes(tenant, args.writes - 1 - half, per_transaction=100)
    fill_chain(tenant.pk, args.entries)
    from django.db import connection

    with connection.cursor() as cursor:  # as autovacuum leaves a table: counting reads the index only
        cursor.execute("VACUUM ANALYZE audit_auditentry")
    report = verify_chain(tenant)
    if report.status != ChainStatus.UNANCHORED or report.entries != args.entries:
        raise SystemExit(f"the benchmark's own chain does not verify: {report.describe()}")
    verify = verify_rate(args.entries, args.repeats, lambda: verify_chain(tenant))
    walk = verify_rate(args.entries, args.repeats, lambda: walk_chain(tenant))

    command = f"python bench/audit_throughput.py --writes {args.writes} --entries {args.entries}"
    print(f"\n{where}; command: {command}\n")

    def row(label: str, count: int, rates: tuple[float, float], goal: int | None) -> list[str]:
        met = "" if goal is None else "yes" if rates[0] >= goal else "NO"
        return [
            label,
            f"{count:,}",
            f"{rates[0]:,.0f}",
            f"{rates[1]:,.0f}",
            f"≥ {goal:,}" if goal else "",
            met,
        ]

    print(
        table(
            ["measurement", "entries", "entries/s", "entries/s of CPU", "goal", "met"],
            [
                row("audited writes, one writer, a commit each", half, single, WRITE_GOAL),
                row("audited writes, one writer, 100 per commit", args.writes - 1 - half, batched, None),
                row("verify_audit's check of one chain (verify_chain)", args.entries, verify, VERIFY_GOAL),
                row("of which the chain walk (walk_chain)", args.entries, walk, None),
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
