"""The platform benchmarks' data is what the product would have written: no timing is asserted here.

bench/audit_throughput.py and bench/retention_sweep.py fill their databases in bulk rather than
through the actions (docs/benchmarks.md says why); if those rows drifted from what record() and
the consent actions write, the figures would measure something else. Each script's own fill runs
here at a tiny size in the test database, and the product's code must accept what it made.
bench/platform_load.py seeds through the actions and starts servers: too slow to run here
(a tiny run takes minutes), so it is run by hand.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

pytestmark = pytest.mark.django_db


def test_the_audit_benchmarks_bulk_chain_verifies_like_one_record_wrote(tenant_factory):
    from audit.verification import ChainStatus, verify_chain
    from bench.audit_throughput import fill_chain, measure_writes

    tenant = tenant_factory()
    measure_writes(tenant, 6, per_transaction=1)
    measure_writes(tenant, 6, per_transaction=4)
    fill_chain(tenant.pk, 40)
    report = verify_chain(tenant)
    assert (report.status, report.entries) == (ChainStatus.UNANCHORED, 40), report.describe()


def test_the_sweep_benchmark_erases_exactly_its_due_subjects(storage_root: Path):
    from bench.retention_sweep import seed
    from consent.actions import enforce_retention
    from consent.models import Subject, SubjectKey

    seed(12, 3)
    assert SubjectKey.dangerously_unscoped.count() == 12
    assert enforce_retention(echo=lambda line: None).erased_subjects == 0
    later = enforce_retention(now=timezone.now() + timedelta(hours=2), echo=lambda line: None)
    assert later.erased_subjects == 3
    assert Subject.dangerously_unscoped.filter(data_key__isnull=True).count() == 3
    last = enforce_retention(now=timezone.now() + timedelta(hours=4), echo=lambda line: None)
    assert last.erased_subjects == 3  # the second due set, for the run one at a time
    assert Subject.dangerously_unscoped.filter(data_key__isnull=True).count() == 6
