"""The studio's dashboard pages of the training app: the subject hub, the jobs list, the model registry.

Real requests through Django's test client against PostgreSQL; queueing and the registry go through
the real actions, so a page can only show what the actions recorded.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html import escape

import pytest
from django.utils import timezone

from consent import actions as consent_actions
from consent.models import AssetKind
from training.models import IdentityModel, Job, JobStatus, TrainingJob

pytestmark = pytest.mark.django_db


def _html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _section(html: str, element_id: str) -> str:
    """The markup of the element with this id up to its closing tag of the same name (no nesting of it)."""
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>', html)
    assert match, f"#{element_id} is not on the page"
    end = html.index(f"</{match.group(1)}>", match.end())
    return html[match.start() : end]


def _usable_model(subject, version: int = 1, *, active: bool = False, evaluation=None) -> IdentityModel:
    """A registry row whose artifact exists (a stored subject file): the page and the action only look
    at the row; no test here loads the model."""
    artifact = consent_actions.store_subject_file(
        subject=subject,
        kind=AssetKind.ADAPTER,
        data=b"packed",
        content_type="application/zip",
        extension="zip",
    )
    return IdentityModel.objects.for_tenant(subject.tenant).create(
        subject=subject,
        version=version,
        method="identity",
        base_model="var/models/tiny-sd",
        model_kind="sd15",
        artifact=artifact,
        evaluation=evaluation or {},
        is_active=active,
        created_at=timezone.now(),
    )


# --- the subject page -------------------------------------------------------------------------------------
def test_consent_in_force_is_shown_per_purpose_with_its_end(make_subject, sign, staff, client_for) -> None:
    subject = make_subject()
    training_ends, generation_ends = timezone.now() + timedelta(days=30), timezone.now() + timedelta(days=200)
    sign(subject, ["train_identity"], expires_at=training_ends)
    sign(subject, ["generate_images"], expires_at=generation_ends)
    html = _html(client_for(staff, subject.tenant).get(f"/subjects/{subject.pk}/"))
    in_force = _section(html, "purposes-in-force")
    assert 'data-purpose="edit_photos"' not in in_force
    for purpose, ends in (("train_identity", training_ends), ("generate_images", generation_ends)):
        shown = re.search(rf'data-purpose="{purpose}">[^<]*<span[^>]*>([^<]*)<', in_force)
        assert shown and shown.group(1) == f"until {ends.strftime('%Y-%m-%d %H:%M')} UTC"


def test_irreversible_actions_sit_apart_and_an_erased_subject_offers_none(
    enrolled_subject, admin, client_for
) -> None:
    client = client_for(admin, enrolled_subject.tenant)
    html = _html(client.get(f"/subjects/{enrolled_subject.pk}/"))
    summary, danger = _section(html, "subject-summary"), _section(html, "danger-zone")
    assert "/erase/" not in summary and "purpose-satisfied" not in summary
    assert 'id="erase"' in danger and 'id="purpose-satisfied"' in danger and 'class="button danger' in danger
    assert 'id="train-form"' in html and 'id="studio-generate-link"' in html

    consent_actions.erase_subject(actor=admin, subject=enrolled_subject, reason="Art. 17 letter")
    html = _html(client.get(f"/subjects/{enrolled_subject.pk}/"))
    for offered in (
        'id="danger-zone"',
        'id="train-form"',
        'id="studio-generate-link"',
        'id="studio-edit-link"',
        'id="reference-build"',
        'id="send-link"',
    ):
        assert offered not in html, offered
    assert 'data-status="erased"' in html or 'data-status="erasing"' in html


def test_train_from_the_subject_page_goes_to_the_live_job_page(
    photographed, built_set, staff, client_for
) -> None:
    client = client_for(staff, photographed.tenant)
    refused = client.post(f"/subjects/{photographed.pk}/train/", {"method": "identity", "preset": "quick"})
    assert refused.status_code == 400 and "being built" in _section(refused.content.decode(), "train-failure")
    assert not TrainingJob.objects.for_tenant(photographed.tenant).exists()

    built_set(photographed)
    response = client.post(f"/subjects/{photographed.pk}/train/", {"method": "identity", "preset": "quick"})
    job = TrainingJob.objects.for_tenant(photographed.tenant).get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.preset == "quick" and job.method == "identity" and job.status == JobStatus.QUEUED
    job_page = _html(client.get(response["Location"]))
    assert f'href="/models/?subject={photographed.pk}"' in _section(job_page, "job-results")

    bad = client.post(f"/subjects/{photographed.pk}/train/", {"method": "identity", "preset": "overnight"})
    assert bad.status_code == 400 and "overnight" in bad.content.decode()
    assert TrainingJob.objects.for_tenant(photographed.tenant).count() == 1


def test_legal_reviewers_see_versions_and_jobs_but_cannot_train(photographed, legal, client_for) -> None:
    client = client_for(legal, photographed.tenant)
    html = _html(client.get(f"/subjects/{photographed.pk}/"))
    assert 'id="train-form"' not in html and 'id="models"' in html and 'id="subject-jobs"' in html
    assert "/assets/" not in html  # no photo, crop or output image for a reviewer
    response = client.post(f"/subjects/{photographed.pk}/train/", {"method": "identity", "preset": "quick"})
    assert response.status_code == 403


def test_captions_are_edited_on_the_subject_page_through_the_action(
    photographed, built_set, staff, client_for
) -> None:
    reference_set = built_set(photographed)
    item = reference_set.items.order_by("name").first()
    client = client_for(staff, photographed.tenant)
    html = _html(client.get(f"/subjects/{photographed.pk}/"))
    assert f'id="caption-form-{item.pk}"' in _section(html, "reference-set")

    new = f"a photo of {reference_set.token} person, smiling, studio light"
    saved = client.post(f"/reference-items/{item.pk}/caption/", {f"item-{item.pk}-caption": new})
    assert saved.status_code == 302
    item.refresh_from_db()
    assert item.caption == new

    refused = client.post(
        f"/reference-items/{item.pk}/caption/", {f"item-{item.pk}-caption": "a photo of a man"}
    )
    assert refused.status_code == 400  # the caption stays in the form, with the action's reason:
    assert "a photo of a man" in refused.content.decode()
    assert escape(reference_set.token) in _section(refused.content.decode(), "caption-failure")
    item.refresh_from_db()
    assert item.caption == new


# --- the jobs list ----------------------------------------------------------------------------------------
def _jobs(subject, count: int, status: str = JobStatus.QUEUED) -> list[Job]:
    now = timezone.now()
    return [
        Job.objects.for_tenant(subject.tenant).create(
            kind="training", subject=subject, status=status, created_at=now + timedelta(seconds=i)
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("rows", [5, 50])
def test_the_jobs_list_reads_a_constant_number_of_queries(
    rows, consented, staff, client_for, django_assert_max_num_queries
) -> None:
    subject = consented()
    _jobs(subject, rows)
    client = client_for(staff, subject.tenant)
    client.get("/jobs/")  # the session's first request loads what every later one has cached
    with django_assert_max_num_queries(16):
        html = _html(client.get("/jobs/"))
    assert html.count("data-job=") == min(rows, 25)


def test_the_jobs_list_filters_and_shows_places_in_line(consented, staff, legal, client_for) -> None:
    first, other = consented("Ada Example"), consented("Bo Example")
    waiting = _jobs(first, 2)
    done = _jobs(other, 1, JobStatus.SUCCEEDED)[0]
    client = client_for(legal, first.tenant)  # reviewers read every job
    html = _html(client.get("/jobs/"))
    row = _section(html, "jobs")
    assert f'href="/jobs/{waiting[0].pk}/"' in row and f'href="/jobs/{done.pk}/"' in row
    assert "place 1 in line" in row and "place 2 in line" in row
    only_done = _html(client.get("/jobs/?status=succeeded"))
    assert f'data-job="{done.pk}"' in only_done and f'data-job="{waiting[0].pk}"' not in only_done
    of_first = _html(client.get(f"/jobs/?subject={first.pk}"))
    assert f'data-job="{done.pk}"' not in of_first and f'data-job="{waiting[1].pk}"' in of_first
    assert client.get("/jobs/?subject=abc").status_code == 404
    assert client.get("/jobs/?kind=nonsense").status_code == 200


def test_another_tenants_subject_is_no_filter_of_the_jobs_list(
    consented, tenant_factory, member, client_for
) -> None:
    subject = consented()
    outsider = member(tenant_factory("Elsewhere"))
    assert client_for(outsider).get(f"/jobs/?subject={subject.pk}").status_code == 404


# --- the model registry -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [5, 50])
def test_the_registry_reads_a_constant_number_of_queries(
    rows, consented, staff, client_for, django_assert_max_num_queries
) -> None:
    subject = consented()
    for version in range(1, rows + 1):
        IdentityModel.objects.for_tenant(subject.tenant).create(
            subject=subject,
            version=version,
            method="identity",
            base_model="b",
            model_kind="sd15",
            created_at=timezone.now(),
        )
    client = client_for(staff, subject.tenant)
    client.get("/models/")
    with django_assert_max_num_queries(14):
        html = _html(client.get("/models/"))
    assert html.count("data-model=") == min(rows, 25)


def test_the_registry_shows_evaluations_honestly_and_promotes_a_version(
    consented, staff, legal, client_for
) -> None:
    subject = consented()
    first = _usable_model(
        subject,
        1,
        active=True,
        evaluation={"mean_distance": None, "summary": "no face found in any of the 4 generated images"},
    )
    second = _usable_model(
        subject,
        2,
        evaluation={"mean_distance": 0.412, "threshold": 0.6, "summary": "4 of 4 images show a face"},
    )
    client = client_for(staff, subject.tenant)
    html = _html(client.get(f"/models/?subject={subject.pk}"))
    assert "no face found in any of the 4 generated images" in _section(html, "registry")
    assert "0.412" in html and f'id="promote-{second.pk}"' in html and f'id="promote-{first.pk}"' not in html

    reviewer = client_for(legal, subject.tenant)
    assert f'id="promote-{second.pk}"' not in _html(reviewer.get("/models/"))
    assert reviewer.post(f"/models/{second.pk}/activate/").status_code == 403

    assert client.get(f"/models/{second.pk}/activate/").status_code == 200
    assert client.post(f"/models/{second.pk}/activate/").status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    assert second.is_active and not first.is_active


def test_the_navigation_offers_jobs_models_and_the_studio_by_role(tenant, staff, legal, client_for) -> None:
    def links(user) -> set[str]:
        nav = re.search(r'<nav class="main"[^>]*>(.*?)</nav>', _html(client_for(user, tenant).get("/")), re.S)
        assert nav is not None
        return set(re.findall(r'href="([^"]+)"', nav.group(1)))

    assert {"/jobs/", "/models/", "/studio/"} <= links(staff)
    assert {"/jobs/", "/models/"} <= links(legal) and "/studio/" not in links(legal)
