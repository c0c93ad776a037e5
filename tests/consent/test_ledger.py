"""The likeness ledger: a subject's events in one indexed query, its page, and an export checkable offline."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.actions import record
from audit.models import AuditEntry
from consent import actions
from consent.ledger import VERIFY_COMMAND
from tests.consent.photos import photo_bytes
from tests.fixtures.consent import NamedBytes

pytestmark = pytest.mark.django_db


def _unzip(content: bytes, folder: Path) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        archive.extractall(folder)
        return {name: archive.read(name).decode() for name in archive.namelist()}


def _check(folder: Path, command: str) -> subprocess.CompletedProcess[str]:
    """The README's command, as the counsel types it (the shell expands the public key file)."""
    return subprocess.run(  # noqa: S602 (our own documented command; the shell expands the key file)
        command.replace("python3", f"{sys.executable} -I", 1),
        shell=True,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_ledger_lists_what_concerns_the_subject_and_nothing_of_others(
    client_for, legal, staff, enrolled_subject, make_subject, sign
):
    other = make_subject("Other Example")
    sign(other)
    page = client_for(legal).get(f"/subjects/{enrolled_subject.pk}/ledger/")
    assert page.status_code == 200
    html = page.content.decode()
    for action in ("subject.created", "consent.link_sent", "consent.signed", "asset.stored"):
        assert f'data-action="{action}"' in html
    assert "Other Example" not in html
    about_them = AuditEntry.objects.for_tenant(enrolled_subject.tenant).filter(
        subject_ref=enrolled_subject.pk
    )
    assert html.count("data-action=") == about_them.count()
    assert enrolled_subject.records.get().template_sha256 in html
    # Staff run the studio, not the legal review: the ledger reads the audit log.
    assert client_for(staff).get(f"/subjects/{enrolled_subject.pk}/ledger/").status_code == 403


def test_the_ledger_page_costs_the_same_with_5_or_50_events(client_for, legal, enrolled_subject):
    client = client_for(legal)
    client.get(f"/subjects/{enrolled_subject.pk}/ledger/")  # the session's first request reads more
    counts = []
    for total in (5, 45):  # 5 events, then 50
        for _ in range(total):
            record(
                tenant=enrolled_subject.tenant,
                action="test.event",
                payload={"subject_id": enrolled_subject.pk},
            )
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/subjects/{enrolled_subject.pk}/ledger/").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_the_export_verifies_offline_with_the_documented_command_and_fails_on_one_altered_line(
    client_for, legal, staff, enrolled_subject, tmp_path
):
    actions.upload_reference_photos(
        actor=staff, subject=enrolled_subject, uploads=[NamedBytes(photo_bytes("obama2.jpg"), "b.jpg")]
    )
    call_command("anchor_audit", stdout=io.StringIO())
    response = client_for(legal).get(f"/subjects/{enrolled_subject.pk}/ledger.zip")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip" and response["Cache-Control"] == "private, no-store"
    files = _unzip(response.content, tmp_path)
    assert {"ledger.json", "events.csv", "report.html", "README.txt", "chain/segment.jsonl"} <= set(files)
    assert {"chain/verify_chain.py", "chain/checkpoint.jsonl", "chain/public_key.txt"} <= set(files)
    assert VERIFY_COMMAND in files["README.txt"]
    document = json.loads(files["ledger.json"])
    actions_listed = [event["action"] for event in document["events"]]
    assert {"consent.signed", "asset.stored"} <= set(actions_listed)
    assert document["chain"]["holds"] is True
    assert document["consent"]["consent_records"][0]["template_sha256"] in files["report.html"]

    result = _check(tmp_path, VERIFY_COMMAND)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: entries") and "checkpoint #1" in result.stdout

    segment = tmp_path / "chain" / "segment.jsonl"
    lines = segment.read_text().splitlines()
    signed = next(i for i, line in enumerate(lines) if '"consent.signed"' in line)
    lines[signed] = lines[signed].replace('"consent.signed"', '"consent.revoked"')
    segment.write_text("\n".join(lines) + "\n")
    result = _check(tmp_path, VERIFY_COMMAND)
    assert result.returncode == 1
    assert "its content does not match its hash" in result.stderr

    # The export is audited before it is built, so it is the last event of the ledger it contains.
    assert document["events"][-1]["action"] == "consent.exported"
    assert document["events"][-1]["payload"] == {"what": "subject_ledger", "format": "zip"}
    again = client_for(legal).get(f"/subjects/{enrolled_subject.pk}/ledger/")
    assert 'data-action="consent.exported"' in again.content.decode()


def test_the_integrity_check_runs_only_when_asked_and_says_what_the_script_says(
    client_for, legal, enrolled_subject
):
    client = client_for(legal)
    assert "ledger-integrity" not in client.get(f"/subjects/{enrolled_subject.pk}/ledger/").content.decode()
    checked = client.get(f"/subjects/{enrolled_subject.pk}/ledger/", {"verify": "1"}).content.decode()
    assert "Holds, not yet anchored" in checked and "recompute to their hashes" in checked


def test_facts_named_like_template_lookups_still_render(client_for, legal, enrolled_subject):
    """A payload key such as "items" (reference_set.built has one) must not shadow dict methods."""
    record(
        tenant=enrolled_subject.tenant,
        action="reference_set.built",
        payload={"subject_id": enrolled_subject.pk, "items": 2, "keys": "x", "values": [1]},
    )
    client = client_for(legal)
    page = client.get(f"/subjects/{enrolled_subject.pk}/ledger/").content.decode()
    assert "<dt>items</dt><dd>2</dd>" in page
    export = client.get(f"/subjects/{enrolled_subject.pk}/ledger.zip")
    with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
        assert "items: 2" in archive.read("report.html").decode()
