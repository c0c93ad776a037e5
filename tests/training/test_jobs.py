"""The job machinery every kind shares: queueing, the state machine, the runner, fair dispatch, the reaper,
metering, the job page. Run in-process with the probe kind (tests/training/probe.py)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditEntry
from consent import actions as consent_actions
from consent.models import Asset, AssetKind
from tenancy.models import Role
from tests.training import probe
from training.jobs.dispatch import Waiting, dispatch_jobs, fair_order, queue_positions
from training.jobs.lifecycle import (
    JobError,
    StartOutcome,
    cancel_job,
    mark_started,
    requeue_or_fail_stale,
)
from training.jobs.progress import MAX_LOSS_POINTS, thin_history
from training.jobs.runner import run_job
from training.models import Job, JobStatus

pytestmark = pytest.mark.django_db


def _dispatch_one(job: Job) -> str:
    """Hand `job` over as the dispatcher does and return its token (in a test that commits, queueing
    already dispatched it on commit)."""
    dispatch_jobs()
    job.refresh_from_db()
    assert job.dispatch_token is not None, "the job was not handed over"
    return str(job.dispatch_token)


# --- the fair order ---------------------------------------------------------------------------------------
def test_fair_order_alternates_tenants_and_lets_a_lone_job_in_second():
    start = timezone.now()
    a = [Waiting(n, 1, start + timedelta(seconds=n)) for n in range(1, 6)]
    b = [Waiting(100, 2, start + timedelta(seconds=10))]
    order = [item.job_id for item in fair_order(a + b, Counter())]
    assert order == [1, 100, 2, 3, 4, 5]


def test_fair_order_counts_recent_service():
    start = timezone.now()
    waiting = [Waiting(1, 1, start), Waiting(2, 2, start + timedelta(seconds=5))]
    # Tenant 1 had two jobs lately: tenant 2's later job goes first.
    assert [item.job_id for item in fair_order(waiting, Counter({1: 2}))] == [2, 1]


def test_dispatch_fills_free_slots_within_each_tenants_cap(
    settings, tenant_factory, queue_probe, consented, member, make_subject
):
    settings.LIKENESS_JOB_SLOTS = 3
    settings.LIKENESS_TENANT_MAX_CONCURRENT_JOBS = 1
    subject = consented()
    first, second = queue_probe(subject), queue_probe(subject)
    assert dispatch_jobs() == [first.pk]  # the tenant's cap is one, whatever the free slots
    assert dispatch_jobs() == []
    assert queue_positions(subject.tenant) == {second.pk: 1}
    Job.objects.for_tenant(subject.tenant).filter(pk=first.pk).update(status=JobStatus.SUCCEEDED)
    assert dispatch_jobs() == [second.pk]


def test_a_lone_job_of_another_tenant_is_not_starved(settings, queue_probe, consented):
    """Tenant A queues five jobs, then tenant B one: B's starts as soon as the first slot frees up."""
    settings.LIKENESS_JOB_SLOTS = 1
    subject_a = consented("Subject A")
    a_jobs = [queue_probe(subject_a) for _ in range(5)]
    assert dispatch_jobs() == [a_jobs[0].pk]
    other = _other_tenant_job()
    assert queue_positions(other.tenant) == {other.pk: 1}
    started = [a_jobs[0].pk]
    for _ in range(2):
        Job.dangerously_unscoped.filter(pk=started[-1]).update(
            status=JobStatus.SUCCEEDED, started_at=timezone.now()
        )
        (next_job,) = dispatch_jobs()
        started.append(next_job)
    assert started == [a_jobs[0].pk, other.pk, a_jobs[1].pk]


def _other_tenant_job() -> Job:
    """A consented subject and a queued probe job in a second tenant, through the real actions."""
    from django.contrib.auth import get_user_model

    from tenancy.models import Membership, Tenant
    from tests.consent.mailbox import issued
    from tests.fixtures.consent import ALL_PURPOSES, CONSENT_TEXT, SITE_URL
    from training.jobs import queue_job

    tenant = Tenant.objects.create(name="Other Brand", slug="other-brand")
    user = get_user_model().objects.create_user(username="other-staff", password=None)
    Membership.objects.create(user=user, tenant=tenant, role=Role.STAFF)
    admin = get_user_model().objects.create_user(username="other-admin", password=None)
    Membership.objects.create(user=admin, tenant=tenant, role=Role.ADMIN)
    template = consent_actions.publish_consent_template(
        actor=admin, tenant=tenant, name="C", body=CONSENT_TEXT
    )
    subject = consent_actions.create_subject(
        actor=user, tenant=tenant, display_name="Subject B", contact_email="b@example.test"
    )
    link = consent_actions.send_consent_link(
        actor=user,
        subject=subject,
        template=template,
        purposes=ALL_PURPOSES,
        intended_uses="Portraits for the spring campaign on the brand website.",
        identity_verification="Passport checked in person",
        site_url=SITE_URL,
        expires_at=timezone.now() + timedelta(days=30),
    )
    consent_actions.sign_consent(
        token=issued(link).token, purposes=ALL_PURPOSES, full_name="Subject B", representation="none"
    )
    job = Job(tenant=tenant, subject=subject, kind=probe.PROBE)
    return queue_job(actor=user, job=job, add_permission="training.cancel_job")


# --- queueing ---------------------------------------------------------------------------------------------
def test_queueing_checks_consent_and_is_audited(queue_probe, consented, make_subject, staff):
    job = queue_probe(consented())
    assert job.status == JobStatus.QUEUED and job.consent_record is not None
    assert (
        AuditEntry.objects.for_tenant(job.tenant).filter(action="job.queued", target_id=str(job.pk)).exists()
    )
    with pytest.raises(consent_actions.ConsentRequiredError):
        queue_probe(make_subject("Never signed"))


def test_a_full_queue_refuses_more_with_a_reason(settings, queue_probe, consented):
    settings.LIKENESS_TENANT_MAX_QUEUED_JOBS = 2
    subject = consented()
    queue_probe(subject), queue_probe(subject)
    with pytest.raises(JobError, match="already waiting"):
        queue_probe(subject)


def test_legal_reviewers_cannot_queue(queue_probe, consented, legal):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        queue_probe(consented(), actor=legal)


# --- the runner -------------------------------------------------------------------------------------------
def test_a_job_runs_to_success_with_progress_history_metering_and_its_file(queue_probe, consented):
    job = queue_probe(consented())
    token = _dispatch_one(job)
    assert run_job(job.pk, token, host="test-host") is StartOutcome.DONE
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert (job.step, job.total_steps, job.steps_done, job.phase) == (5, 5, 5, "probe")
    assert [point[0] for point in job.loss_history] == [1, 2, 3, 4, 5]
    assert job.losses == {"total": 0.2} and job.learning_rates == {"probe": 1e-4}
    assert job.worker_host == "test-host" and job.device == "cpu" and job.attempts == 1
    assert job.wall_seconds > 0 and job.device_seconds == job.wall_seconds and job.peak_memory_bytes > 0
    assert (
        Asset.objects.for_tenant(job.tenant).filter(subject=job.subject, kind=AssetKind.OUTPUT).count() == 1
    )
    actions = list(
        AuditEntry.objects.for_tenant(job.tenant)
        .filter(target_type="training.job", target_id=str(job.pk))
        .values_list("action", flat=True)
    )
    assert actions == ["job.queued", "job.started", "job.succeeded"]
    # A second delivery of the same message does nothing.
    assert run_job(job.pk, token, host="test-host") is StartOutcome.DONE
    assert Job.objects.for_tenant(job.tenant).get(pk=job.pk).attempts == 1


def test_a_job_whose_consent_lapsed_before_it_started_fails_with_the_reason_and_writes_nothing(
    queue_probe, make_subject, sign, staff
):
    subject = make_subject()
    training = sign(subject, ["train_identity"])
    sign(subject, ["generate_images"])  # keeps the subject's data: no erasure, only the purpose lapses
    job = queue_probe(subject)
    token = _dispatch_one(job)
    consent_actions.record_revocation(
        actor=staff, record=training, reason="Letter from the subject", received_via="post"
    )
    run_job(job.pk, token, host="test-host")
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "consent_revoked"
    assert "revoked their consent to training an identity model" in job.error_message
    assert not Asset.objects.for_tenant(job.tenant).filter(kind=AssetKind.OUTPUT).exists()
    assert job.step == 0


def test_an_error_inside_a_kind_fails_the_job_with_a_sentence_not_a_traceback(
    queue_probe, consented, monkeypatch
):
    def broken(job, context):
        raise RuntimeError("CUDA error: device-side assert triggered at /srv/secret/path.py:12")

    monkeypatch.setattr(probe, "execute", broken)
    probe.register()
    job = queue_probe(consented())
    run_job(job.pk, _dispatch_one(job), host="test-host")
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "internal_error"
    assert "CUDA" not in job.error_message and "/srv" not in job.error_message
    assert f"job {job.pk}" in job.error_message


def test_a_stale_or_duplicate_message_never_runs_the_job_twice(queue_probe, consented):
    job = queue_probe(consented())
    token = _dispatch_one(job)
    assert mark_started(job.pk, "not-the-token", host="w")[0] is StartOutcome.DONE
    assert mark_started(job.pk, token, host="w1")[0] is StartOutcome.RUN
    # The first run still beats: a second delivery waits instead of running it alongside.
    assert mark_started(job.pk, token, host="w2")[0] is StartOutcome.BUSY
    # Its worker died (no beat for longer than LIKENESS_JOB_STALE_SECONDS): the next delivery takes over.
    Job.objects.for_tenant(job.tenant).filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=10)
    )
    outcome, taken = mark_started(job.pk, token, host="w3")
    assert outcome is StartOutcome.RUN and taken is not None and taken.attempts == 2
    assert AuditEntry.objects.for_tenant(job.tenant).filter(action="job.resumed").count() == 1


def test_after_too_many_lost_workers_the_job_fails_with_the_reason(settings, queue_probe, consented):
    settings.LIKENESS_JOB_MAX_ATTEMPTS = 2
    job = queue_probe(consented())
    token = _dispatch_one(job)
    stale = timezone.now() - timedelta(seconds=10)
    for _ in range(2):
        assert mark_started(job.pk, token, host="w")[0] is StartOutcome.RUN
        Job.objects.for_tenant(job.tenant).filter(pk=job.pk).update(heartbeat_at=stale)
    assert mark_started(job.pk, token, host="w")[0] is StartOutcome.DONE
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "worker_lost"
    assert "stopped 2 times" in job.error_message


# --- cancellation -----------------------------------------------------------------------------------------
def test_a_queued_job_is_cancelled_at_once(queue_probe, consented, staff):
    job = queue_probe(consented())
    cancel_job(actor=staff, job=job)
    assert job.status == JobStatus.CANCELLED and job.finished_at is not None
    assert dispatch_jobs() == []


@pytest.mark.django_db(transaction=True)
def test_a_running_job_stops_within_a_step_and_stores_nothing(
    settings, queue_probe, consented, staff, monkeypatch
):
    monkeypatch.setenv(probe.STEPS_ENV, "200")
    monkeypatch.setenv(probe.STEP_SECONDS_ENV, "0.05")
    job = queue_probe(consented())
    token = _dispatch_one(job)

    def work() -> None:
        try:
            run_job(job.pk, token, host="thread")
        finally:
            connection.close()  # the thread's own connection, or the test database cannot be dropped

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 30
    while Job.objects.for_tenant(job.tenant).get(pk=job.pk).step < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    cancel_job(actor=staff, job=job, reason="Wrong photos")
    worker.join(timeout=30)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.error_message == "Wrong photos"
    assert job.step < 200
    assert not Asset.objects.for_tenant(job.tenant).filter(kind=AssetKind.OUTPUT).exists()
    assert not (settings.LIKENESS_SCRATCH_ROOT / f"job-{job.pk}").exists()


def test_revoking_the_last_consent_cancels_the_subjects_jobs(queue_probe, consented, link_tokens):
    subject = consented()
    consent_actions.store_subject_file(
        subject=subject, kind=AssetKind.CROP, data=b"crop", content_type="image/png", extension="png"
    )
    queued = queue_probe(subject)
    running = queue_probe(subject)
    Job.objects.for_tenant(subject.tenant).filter(pk=running.pk).update(status=JobStatus.RUNNING)
    (record,) = subject.records.all()
    consent_actions.revoke_via_link(token=link_tokens[record.pk])
    # The gate refuses at once (a running job stops at its next step: see the runner tests); the
    # erasure's hook then cancels what is left, before the files go.
    certificate = subject.deletion_certificates.get()
    consent_actions.complete_erasure(certificate.pk)
    queued.refresh_from_db(), running.refresh_from_db()
    assert queued.status == JobStatus.CANCELLED
    assert running.status == JobStatus.RUNNING and running.cancel_requested_at is not None
    certificate.refresh_from_db()
    assert sorted(certificate.cancelled_jobs) == sorted(
        f"training.jobs:{job.pk}" for job in (queued, running)
    )


# --- the reaper -------------------------------------------------------------------------------------------
def test_the_reaper_queues_a_job_whose_worker_died_again_then_gives_up(settings, queue_probe, consented):
    settings.LIKENESS_JOB_MAX_ATTEMPTS = 2
    job = queue_probe(consented())
    token = _dispatch_one(job)
    mark_started(job.pk, token, host="w")
    later = timezone.now() + timedelta(seconds=10)
    assert requeue_or_fail_stale(later) == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.dispatch_token is None
    token = _dispatch_one(job)
    mark_started(job.pk, token, host="w")
    requeue_or_fail_stale(timezone.now() + timedelta(seconds=10))
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "worker_lost"


def test_the_reaper_hands_over_again_a_job_no_worker_ever_started(queue_probe, consented):
    job = queue_probe(consented())
    first = _dispatch_one(job)
    assert requeue_or_fail_stale(timezone.now() + timedelta(seconds=10)) == [job.pk]
    second = _dispatch_one(job)
    assert second != first
    assert mark_started(job.pk, first, host="w")[0] is StartOutcome.DONE  # the lost message, late


# --- progress, metering -----------------------------------------------------------------------------------
def test_the_loss_curve_stays_bounded_and_keeps_its_ends():
    history: list[list[float]] = []
    for step in range(1, 5001):
        history = thin_history(history, [step, 1.0 / step])
    assert len(history) <= MAX_LOSS_POINTS
    assert history[0][0] == 1 and history[-1][0] == 5000


def test_usage_sums_a_months_jobs_per_kind(queue_probe, consented, admin, staff, api_client_for):
    subject = consented()
    for _ in range(2):
        job = queue_probe(subject)
        run_job(job.pk, _dispatch_one(job), host="w")
    cancelled = queue_probe(subject)
    cancel_job(actor=staff, job=cancelled)
    month = timezone.now().strftime("%Y-%m")
    response = api_client_for(admin, subject.tenant).get(f"/api/v1/usage/?month={month}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["by_kind"]["probe"]["jobs"] == 3 and body["by_kind"]["probe"]["steps"] == 10
    assert body["total"]["device_seconds"] > 0
    assert api_client_for(admin, subject.tenant).get("/api/v1/usage/?month=2026-13").status_code == 400
    assert api_client_for(staff, subject.tenant).get("/api/v1/usage/").status_code == 403
    other = api_client_for(admin, subject.tenant).get("/api/v1/usage/?month=1999-01").json()
    assert other["total"]["jobs"] == 0


# --- the page and the API -------------------------------------------------------------------------------
def test_the_job_page_shows_progress_and_cancels(queue_probe, consented, staff, legal, client_for):
    job = queue_probe(consented())
    page = client_for(staff, job.tenant).get(f"/jobs/{job.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'data-socket="/ws/jobs/{job.pk}/"' in html and "job-snapshot" in html and "Cancel job" in html
    assert "Cancel job" not in client_for(legal, job.tenant).get(f"/jobs/{job.pk}/").content.decode()
    assert client_for(legal, job.tenant).post(f"/jobs/{job.pk}/cancel/").status_code == 403
    response = client_for(staff, job.tenant).post(f"/jobs/{job.pk}/cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_the_jobs_api_lists_every_kind_with_places_in_line(queue_probe, consented, staff, api_client_for):
    subject = consented()
    first, second = queue_probe(subject), queue_probe(subject)
    client = api_client_for(staff, subject.tenant)
    listing = client.get("/api/v1/jobs/").json()
    rows = {row["id"]: row for row in listing["results"]}
    assert rows[first.pk]["queue_position"] == 1 and rows[second.pk]["queue_position"] == 2
    assert rows[first.pk]["status"] == "queued" and rows[first.pk]["kind"] == "probe"
    cancelled = client.post(f"/api/v1/jobs/{second.pk}/cancel/", {"reason": "duplicate"}, format="json")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.post("/api/v1/jobs/", {}, format="json").status_code in (403, 405)
