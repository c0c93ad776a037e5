"""The retention sweep over many subjects: with nothing due, and with some due.

    python bench/retention_sweep.py [--subjects 100000] [--due 1000] [--database-url URL]

In a fresh PostgreSQL database of its own (bench/platform_common.py), one subject is made through
the real actions (created, e-mailed a link, signed, a file stored: it holds a subject key) and
copied in bulk: `--subjects` subjects, each with its own key, link and signed consent record. Of
them, `--due` have a consent that ends in an hour. Through the actions 100,000 subjects would
take hours on the development machine (bench/platform_load.py seeds about 3-10 per second there);
the sweep only reads these rows, and bulk copies of a real subject's rows are the rows it reads.

Then `enforce_retention` (the beat task's and the command's code) runs four times: a dry run
and a real run with nothing due (now), a real run two hours later (`--now`), which erases `--due`
subjects (each: the key destroyed, a deletion certificate, audit entries) on
LIKENESS_SWEEP_CONNECTIONS connections at once, and, side by side, one four hours later that
erases `--due` more one at a time. Goals (issue 14), at 100,000 subjects with 1,000 due: under
30 s; with nothing due: under 5 s.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.platform_common import (
    bench_database_url,
    bench_tenant,
    fresh_database,
    machine,
    setup_django,
    signed_subject,
    table,
)

BULK_BATCH = 2000
NOTHING_DUE_GOAL_S, DUE_GOAL_S = 5.0, 30.0


def _copies(original: Any, count: int, **changes: Any) -> list[Any]:
    """`count` unsaved copies of a model instance, with new unique ids (their defaults) and `changes`."""
    unique = [
        field
        for field in original._meta.concrete_fields
        if field.unique and not field.primary_key and field.has_default()
    ]
    made = []
    for _ in range(count):
        twin = copy.copy(original)
        twin._state = copy.copy(original._state)
        twin._state.adding = True
        twin.pk = None
        for field in unique:
            setattr(twin, field.attname, field.get_default())
        for name, value in changes.items():
            setattr(twin, name, value)
        made.append(twin)
    return made


def seed(subjects: int, due: int) -> None:
    from django.db import transaction
    from django.utils import timezone
    from tqdm import tqdm

    from consent import actions as consent
    from consent.models import AssetKind, ConsentLink, ConsentRecord, Subject, SubjectKey

    tenant, _, staff, template = bench_tenant("Bench Sweep", "bench-sweep")
    expires_at = timezone.now() + timedelta(days=365)
    original, link, record = signed_subject(tenant, staff, template, 0, expires_at=expires_at)
    consent.store_subject_file(
        subject=original,
        kind=AssetKind.MASK,
        data=b"bench",
        content_type="application/octet-stream",
        extension="bin",
    )
    key = SubjectKey.objects.for_tenant(tenant).get(subject=original)
    link.refresh_from_db()
    first_ends = timezone.now() + timedelta(hours=1)  # the first due subjects' consents end then
    second_ends = first_ends + timedelta(hours=2)  # the second ones', for the run one at a time
    with tqdm(total=subjects - 1, desc="subjects (bulk copies)", unit="subject") as bar:
        made = 1
        while made < subjects:
            count = min(BULK_BATCH, subjects - made)
            with transaction.atomic():
                subjects_made = _copies(original, count)
                for n, subject in enumerate(subjects_made, start=made):
                    subject.display_name, subject.contact_email = f"Subject {n:06d}", f"s{n}@sweep.invalid"
                batch = Subject.objects.bulk_create(subjects_made)
                SubjectKey.objects.bulk_create(
                    [twin for subject in batch for twin in _copies(key, 1, subject_id=subject.pk)]
                )
                links = ConsentLink.objects.bulk_create(
                    [twin for subject in batch for twin in _copies(link, 1, subject_id=subject.pk)]
                )
                records = []
                for n, (subject, its_link) in enumerate(zip(batch, links, strict=True)):
                    from_end = subjects - (made + n)  # the last 2 x `due` subjects are due
                    changes: dict[str, Any] = {"subject_id": subject.pk, "link_id": its_link.pk}
                    if from_end <= 2 * due:
                        changes["expires_at"] = first_ends if from_end <= due else second_ends
                    records += _copies(record, 1, **changes)
                ConsentRecord.objects.bulk_create(records)
            made += count
            bar.update(count)


def timed_sweep(**options: Any) -> tuple[float, Any]:
    from consent.actions import enforce_retention

    start = time.perf_counter()
    report = enforce_retention(echo=lambda line: None, **options)
    return time.perf_counter() - start, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=bench_database_url("likeness_bench_sweep"))
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1_000)
    args = parser.parse_args(argv)
    if not 0 <= 2 * args.due < args.subjects:
        parser.error("need 0 <= 2 x --due < --subjects")

    fresh_database(args.database_url)
    setup_django(args.database_url, migrate=True)
    from django.conf import settings
    from django.utils import timezone

    where = machine()
    start = time.perf_counter()
    seed(args.subjects, args.due)
    seeded_s = time.perf_counter() - start
    dry_s, _ = timed_sweep(dry_run=True)
    nothing_s, nothing = timed_sweep()
    at_once = settings.LIKENESS_SWEEP_CONNECTIONS
    due_s, erased = timed_sweep(now=timezone.now() + timedelta(hours=2))
    settings.LIKENESS_SWEEP_CONNECTIONS = 1
    serial_s, serial = timed_sweep(now=timezone.now() + timedelta(hours=4))
    counts = [nothing.erased_subjects, erased.erased_subjects, serial.erased_subjects]
    if counts != [0, args.due, args.due]:
        raise SystemExit(f"the sweeps erased {counts} subjects")

    def met(seconds: float, goal: float) -> str:
        return "yes" if seconds < goal else "NO"

    command = f"python bench/retention_sweep.py --subjects {args.subjects} --due {args.due}"
    print(f"\n{where}; command: {command}; seeded in {seeded_s:,.0f} s\n")
    print(
        table(
            ["sweep over subjects holding data", "subjects", "due", "seconds", "goal", "met"],
            [
                ["dry run, nothing due", f"{args.subjects:,}", "0", f"{dry_s:.2f}", "", ""],
                [
                    "nothing due",
                    f"{args.subjects:,}",
                    "0",
                    f"{nothing_s:.2f}",
                    f"< {NOTHING_DUE_GOAL_S:g} s",
                    met(nothing_s, NOTHING_DUE_GOAL_S),
                ],
                [
                    f"consent expired: erased, {at_once} at once",
                    f"{args.subjects:,}",
                    f"{args.due:,}",
                    f"{due_s:.2f}",
                    f"< {DUE_GOAL_S:g} s",
                    met(due_s, DUE_GOAL_S),
                ],
                [
                    "consent expired: erased, one at a time",
                    f"{args.subjects - args.due:,}",
                    f"{args.due:,}",
                    f"{serial_s:.2f}",
                    "",
                    "",
                ],
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
