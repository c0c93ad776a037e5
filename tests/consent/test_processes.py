"""Erasure across real processes: a sweep killed with SIGKILL halfway, and a real Celery worker.

These tests commit (transactional database), because the other process reads
the same PostgreSQL test database and the same storage folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from audit.models import AuditEntry
from audit.verification import verify_chain
from consent import actions, vault
from consent.faults import CRASH_ENV
from consent.models import Asset, AssetKind, DeletionCertificate, SubjectKey
from tests.support import TEST_WORKER_ARGS

from .scans import files_under

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("another process must see the test database: needs PostgreSQL (DATABASE_URL)")


def _child_env(storage_root: Path, **extra: str) -> dict[str, str]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "LIKENESS_STORAGE_ROOT": str(storage_root),
        "LIKENESS_MASTER_KEY": settings.LIKENESS_MASTER_KEY,
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_DEBUG": "1",
    }
    env.pop(CRASH_ENV, None)
    env.update(extra)
    return env


def _sweep_process(now, storage_root: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "enforce_retention", "--now", now.isoformat()],
        cwd=ROOT,
        env=_child_env(storage_root, **extra),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("sweep_connections", [1, 2])
def test_a_sweep_killed_halfway_finishes_on_the_next_run(
    tenant, make_subject, sign, storage_root, sweep_connections
) -> None:
    """One subject at a time, the crash falls in the second subject's erasure; two at a time, in one or
    two of them: either way the next run finishes them, and nothing is erased twice."""
    now = timezone.now()
    at_once = {"LIKENESS_SWEEP_CONNECTIONS": str(sweep_connections)}
    due, files_of = [], {}
    for n in range(4):
        subject = make_subject(f"Due {n}")
        sign(subject, expires_at=now + timedelta(days=10))
        files_of[subject.pk] = sorted(
            actions.store_subject_file(
                subject=subject,
                kind=kind,
                data=os.urandom(200),
                content_type="application/octet-stream",
                extension="bin",
            ).pk
            for kind in (AssetKind.REFERENCE_PHOTO, AssetKind.CROP, AssetKind.ADAPTER)
        )
        due.append(subject)
    keeper = make_subject("Not due")
    sign(keeper, expires_at=now + timedelta(days=400))
    kept = actions.store_subject_file(
        subject=keeper,
        kind=AssetKind.ADAPTER,
        data=b"adapter weights",
        content_type="application/octet-stream",
        extension="bin",
    )
    later = now + timedelta(days=11)

    # Killed by SIGKILL right after deleting the 5th file: the 2nd subject's erasure is half done.
    crashed = _sweep_process(later, storage_root, **at_once, **{CRASH_ENV: "erasure.file_deleted:5"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    certificates = DeletionCertificate.objects.for_tenant(tenant)
    interrupted = list(certificates.filter(completed_at__isnull=True))
    if sweep_connections == 1:
        assert certificates.filter(completed_at__isnull=False).count() == 1
        assert [certificate.subject for certificate in interrupted] == [due[1]]
        # Its rows survived the crash (rolled back) though two of its files are already gone.
        assert len(files_under(storage_root / f"tenants/{tenant.pk}/subjects/{due[1].pk}")) == 1
    assert interrupted and len(interrupted) <= sweep_connections
    for certificate in interrupted:
        assert certificate.key_destroyed_at is not None  # the key went in the transaction that committed
        assert Asset.objects.for_tenant(tenant).filter(subject=certificate.subject).count() == 3

    finished = _sweep_process(later, storage_root, **at_once)
    assert finished.returncode == 0, finished.stderr
    assert "finished interrupted erasure" in finished.stdout

    for subject in due:
        certificate = certificates.get(subject=subject)  # exactly one each: nothing erased twice
        assert certificate.completed_at is not None and certificate.key_destroyed_at is not None
        assert sorted(certificate.file_ids) == files_of[subject.pk]
        assert certificate.destroyed_counts == {"adapter": 1, "crop": 1, "reference_photo": 1}
        assert not SubjectKey.objects.for_tenant(tenant).filter(subject=subject).exists()
    entries = AuditEntry.objects.for_tenant(tenant)
    assert entries.filter(action="erasure.completed").count() == 4
    assert entries.filter(action="subject_key.destroyed").count() == 4
    # Nothing lost: the subject that was not due is intact and readable.
    assert vault.read_asset(Asset.objects.for_tenant(tenant).get(pk=kept.pk)) == b"adapter weights"
    assert files_under(storage_root) == [storage_root / kept.storage_name]
    # And a third run has nothing left to do.
    again = _sweep_process(later, storage_root, **at_once)
    assert "0 subjects erased, 0 files destroyed, 0 interrupted erasures finished" in again.stdout


def test_the_sweep_erases_several_subjects_at_once_each_on_its_own_connection(
    tenant, make_subject, sign, storage_root, settings
) -> None:
    """Issue 14: while one erasure waits for the database another runs; the report keeps the subjects'
    order, the audit chain stays whole, and every certificate is complete."""
    from consent.actions import enforce_retention
    from consent.erasure import ErasureHook, register_erasure_hook, unregister_erasure_hook

    settings.LIKENESS_SWEEP_CONNECTIONS = 2
    now = timezone.now()
    due = []
    for n in range(6):
        subject = make_subject(f"Due {n}")
        sign(subject, expires_at=now + timedelta(days=10))
        actions.store_subject_file(
            subject=subject,
            kind=AssetKind.REFERENCE_PHOTO,
            data=os.urandom(200),
            content_type="application/octet-stream",
            extension="bin",
        )
        due.append(subject)
    threads: list[str] = []

    def note_thread(subject) -> list[str]:
        threads.append(threading.current_thread().name)
        return []

    register_erasure_hook(ErasureHook(name="test.threads", cancel_jobs=note_thread))
    try:
        report = enforce_retention(now=now + timedelta(days=11), echo=lambda line: None)
    finally:
        unregister_erasure_hook("test.threads")
    assert report.erased_subjects == 6 and report.erased_files == 6
    erased = [line.split()[2] for line in report.lines if line.startswith("erased subject")]
    assert erased == [str(subject.pk) for subject in due]
    assert len(threads) == 6 and all(name.startswith("retention-sweep") for name in threads), threads
    certificates = DeletionCertificate.objects.for_tenant(tenant)
    assert certificates.filter(completed_at__isnull=False).count() == 6
    assert not SubjectKey.objects.for_tenant(tenant).exists() and files_under(storage_root) == []
    assert verify_chain(tenant).first_bad_seq is None
    entries = AuditEntry.objects.for_tenant(tenant).order_by("seq").values_list("seq", flat=True)
    assert list(entries) == list(range(1, len(entries) + 1))  # gapless: two writers never forked it


@pytest.fixture
def celery_worker(storage_root: Path):
    """A real Celery worker on the default queue, against this test's database and storage."""
    from config.celery import app

    app.control.purge()  # stale messages of earlier runs on this Redis database
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            "default",
            *TEST_WORKER_ARGS,
        ],
        cwd=ROOT,
        env=_child_env(storage_root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.mark.worker
def test_revocation_erasure_is_finished_by_a_real_worker(
    make_subject, sign, link_tokens, storage_root, celery_worker
) -> None:
    subject = make_subject()
    record = sign(subject)
    actions.store_subject_file(
        subject=subject,
        kind=AssetKind.ADAPTER,
        data=b"weights",
        content_type="application/octet-stream",
        extension="bin",
    )
    assert files_under(storage_root)

    actions.revoke_via_link(token=link_tokens[record.pk])  # commits; on commit the task is queued

    certificate = DeletionCertificate.objects.for_tenant(subject.tenant).get(subject=subject)
    assert certificate.key_destroyed_at is not None
    deadline = time.monotonic() + 120
    while certificate.completed_at is None and time.monotonic() < deadline:
        assert celery_worker.poll() is None, celery_worker.stdout.read() if celery_worker.stdout else ""
        time.sleep(0.5)
        certificate.refresh_from_db()
    assert certificate.completed_at is not None, "the worker did not finish the erasure"
    assert certificate.destroyed_counts == {"adapter": 1}
    assert files_under(storage_root) == []
