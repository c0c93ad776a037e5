"""The studio's pages (/studio/ generate, /studio/edit/): what they offer, what they queue through the
editing actions, the reasons they give, and who may use them. Real requests against PostgreSQL, with
the tiny model trained once per session (tests/fixtures/models.py)."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from consent import vault
from editing.models import EditJob, GenerationJob
from tests.consent import photos
from tests.fixtures.consent import NamedBytes
from training.models import JobStatus

pytestmark = pytest.mark.django_db


def _options(html: str, name: str) -> list[str]:
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert select, f"no select {name}"
    return re.findall(r'<option value="([^"]*)"', select.group(1))


def _mask_png(size: tuple[int, int], *, painted: bool = True) -> bytes:
    mask = Image.new("L", size, 0)
    if painted:
        mask.paste(255, (0, 0, size[0] // 2, size[1] // 2))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def _stored_size(photo) -> tuple[int, int]:
    return Image.open(io.BytesIO(vault.read_asset(photo))).size


def test_the_studio_offers_only_models_whose_consent_covers_generation(
    model, make_subject, sign, staff, client_for
) -> None:
    training_only = make_subject("Tess Example")
    sign(training_only, ["train_identity"])
    untrained = make_subject("Uma Example")
    sign(untrained)
    html = client_for(staff, model.tenant).get("/studio/").content.decode()
    assert _options(html, "model") == [str(model.pk)]
    choices = re.findall(r'<li data-subject="(\d+)" class="(\w+)">(.*?)</li>', html, re.S)
    by_subject = {int(pk): (state, text) for pk, state, text in choices}
    assert by_subject[model.subject_id][0] == "available"
    assert by_subject[untrained.pk] == ("unavailable", by_subject[untrained.pk][1])
    assert "No trained model yet" in by_subject[untrained.pk][1]
    assert by_subject[training_only.pk][0] == "unavailable"


def test_generate_queues_through_the_action_and_keeps_the_prompt_on_a_refusal(
    model, staff, client_for
) -> None:
    client = client_for(staff, model.tenant)
    refused = client.post(
        "/studio/", {"model": model.pk, "prompt": "a photo of {celebrity}", "preset": "quick", "count": 2}
    )
    assert refused.status_code == 400
    html = refused.content.decode()
    assert "{celebrity}" in html and "a photo of {celebrity}</textarea>" in html
    assert not GenerationJob.objects.for_tenant(model.tenant).exists()

    queued = client.post(
        "/studio/", {"model": model.pk, "prompt_preset": "headshot", "preset": "quick", "count": 2, "seed": 7}
    )
    job = GenerationJob.objects.for_tenant(model.tenant).get()
    assert queued.status_code == 302 and queued["Location"] == f"/studio/?job={job.pk}"
    assert (job.prompt_preset, job.preset, job.count, job.seed, job.identity_model_id) == (
        "headshot",
        "quick",
        2,
        7,
        model.pk,
    )
    results = client.get(queued["Location"]).content.decode()
    assert f'data-job="{job.pk}"' in results and f'href="/jobs/{job.pk}/"' in results


def test_the_results_show_identity_scores_and_regenerate_with_another_seed(made, staff, client_for) -> None:
    client = client_for(staff, made.tenant)
    html = client.get(f"/studio/?job={made.job_id}").content.decode()
    assert f'data-output="{made.pk}"' in html and f'src="/assets/{made.image_id}/"' in html
    shown = "no face found" if made.identity_distance is None else f"identity {made.identity_distance:.3f}"
    assert shown in html
    form = re.search(r'<form[^>]*id="regenerate-form"[^>]*>(.*?)</form>', html, re.S)
    assert form is not None
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(1)))
    assert "seed" not in fields
    again = client.post("/studio/", fields)
    assert again.status_code == 302
    first = GenerationJob.objects.for_tenant(made.tenant).get(pk=made.job_id)
    second = GenerationJob.objects.for_tenant(made.tenant).exclude(pk=first.pk).get()
    assert (second.prompt_preset, second.prompt, second.count, second.preset) == (
        first.prompt_preset,
        first.prompt,
        first.count,
        first.preset,
    )
    assert second.seed != first.seed


def test_an_edit_of_a_stored_photo_with_a_painted_mask_is_queued(model, staff, client_for) -> None:
    client = client_for(staff, model.tenant)
    subject = model.subject
    page = client.get(f"/studio/edit/?subject={subject.pk}").content.decode()
    assert f'value="{subject.enrollment_photo_id}"' in page and 'id="mask-canvas"' in page
    assert "Leave empty to use the photo&#x27;s own caption" in page
    stored_size = _stored_size(subject.enrollment_photo)
    posted = client.post(
        f"/studio/edit/?subject={subject.pk}",
        {
            "model": model.pk,
            "source_photo": subject.enrollment_photo_id,
            "preset": "smile",
            "mask_mode": "constrain",
            "source_prompt": "a photo of {identity} {class_word}",
            "mask": NamedBytes(_mask_png(stored_size), "mask.png"),
        },
    )
    job = EditJob.objects.for_tenant(model.tenant).get()
    assert posted.status_code == 302 and posted["Location"] == f"/studio/edit/?job={job.pk}"
    assert job.user_mask is not None and job.source_photo_id == subject.enrollment_photo_id
    assert job.status == JobStatus.QUEUED


def test_an_empty_mask_or_no_photo_is_refused_with_the_reason(model, staff, client_for) -> None:
    client = client_for(staff, model.tenant)
    subject = model.subject
    size = _stored_size(subject.enrollment_photo)
    empty = client.post(
        f"/studio/edit/?subject={subject.pk}",
        {
            "model": model.pk,
            "source_photo": subject.enrollment_photo_id,
            "preset": "smile",
            "mask_mode": "constrain",
            "mask": NamedBytes(_mask_png(size, painted=False), "mask.png"),
        },
    )
    assert empty.status_code == 400 and "marks nothing" in empty.content.decode()
    neither = client.post(
        f"/studio/edit/?subject={subject.pk}",
        {"model": model.pk, "preset": "smile", "mask_mode": "constrain"},
    )
    assert neither.status_code == 400 and "Choose the photo to edit" in neither.content.decode()
    assert not EditJob.objects.for_tenant(model.tenant).exists()


def test_legal_reviewers_and_other_tenants_get_nothing_of_the_studio(
    made, legal, tenant_factory, member, client_for
) -> None:
    reviewer = client_for(legal, made.tenant)
    assert reviewer.get("/studio/").status_code == 403
    assert reviewer.get("/studio/edit/").status_code == 403
    outsider = client_for(member(tenant_factory("Elsewhere")))
    assert outsider.get(f"/studio/?job={made.job_id}").status_code == 404
    assert outsider.get(f"/studio/?subject={made.subject_id}").status_code == 404
    assert outsider.get(f"/studio/edit/?subject={made.subject_id}").status_code == 404


@pytest.mark.parametrize("rows", [5, 50])
def test_the_studio_lists_subjects_in_a_constant_number_of_queries(
    rows, make_subject, sign, staff, client_for, django_assert_max_num_queries
) -> None:
    for index in range(rows):
        subject = make_subject(f"Subject {index:02d}")
        if index % 2:
            sign(subject)
    client = client_for(staff, subject.tenant)
    client.get("/studio/")
    with django_assert_max_num_queries(14):
        html = client.get("/studio/").content.decode()
    assert html.count("<li data-subject=") == rows


def test_a_photo_uploaded_for_an_edit_is_checked_by_the_intake(model, staff, client_for) -> None:
    client = client_for(staff, model.tenant)
    refused = client.post(
        f"/studio/edit/?subject={model.subject_id}",
        {
            "model": model.pk,
            "source_upload": NamedBytes(photos.no_face_jpeg(), "coffee.jpg"),
            "preset": "smile",
            "mask_mode": "constrain",
        },
    )
    assert refused.status_code == 400 and "face" in refused.content.decode()
    assert not EditJob.objects.for_tenant(model.tenant).exists()


def test_a_subject_past_the_listed_ones_can_still_be_chosen(
    model, make_subject, staff, client_for, monkeypatch
) -> None:
    from editing import views

    monkeypatch.setattr(views, "MAX_STUDIO_SUBJECTS", 2)
    make_subject("Aaron Example")
    make_subject("Abby Example")
    client = client_for(staff, model.tenant)
    assert 'name="model"' not in client.get("/studio/").content.decode()  # the list stops before them
    chosen = client.get(f"/studio/?subject={model.subject_id}").content.decode()
    assert _options(chosen, "model") == [str(model.pk)]
