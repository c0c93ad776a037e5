"""A subject's part of the audit chain, exported and checked offline by the shipped script alone."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from audit.actions import record
from audit.segment import VERIFIER_SOURCE, subject_segment

pytestmark = pytest.mark.django_db

SUBJECT = 5


def _history(tenant) -> None:
    """The subject's entries interleaved with another subject's and with entries about nobody."""
    for n in range(4):
        record(tenant=tenant, action="test.about", payload={"subject_id": SUBJECT, "n": n, "ratio": 0.1 * n})
        record(tenant=tenant, action="test.other", payload={"subject_id": 6, "secret_fact": f"other-{n}"})
        record(tenant=tenant, action="test.nobody", payload={"n": n})


def _export(tenant, folder: Path) -> list[str]:
    segment = subject_segment(tenant, SUBJECT)
    lines = list(segment.lines())
    (folder / "segment.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if segment.checkpoint_line:
        (folder / "checkpoint.jsonl").write_text(segment.checkpoint_line + "\n", encoding="utf-8")
    shutil.copy(VERIFIER_SOURCE, folder / "verify_chain.py")
    return lines


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # -I: isolated mode, no project on the path: the script must stand alone.
    return subprocess.run(
        [sys.executable, "-I", "verify_chain.py", "segment.jsonl", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_segment_holds_the_subject_in_full_and_others_only_as_hashes(tenant, tmp_path):
    _history(tenant)
    lines = _export(tenant, tmp_path)
    entries = [json.loads(line) for line in lines]
    assert [entry["seq"] for entry in entries] == list(range(1, 11))  # from the first to the last about them
    full = [entry for entry in entries if "action" in entry]
    assert {entry["action"] for entry in full} == {"test.about"} and len(full) == 4
    assert "secret_fact" not in "".join(lines)
    # The script recomputes every full entry's stored hash: its canonical form is the platform's.
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "entries 1..10 are linked; 4 full entries" in result.stdout


def test_a_signed_checkpoint_after_the_segment_extends_it_and_verifies(tenant, tmp_path):
    _history(tenant)
    call_command("anchor_audit", stdout=io.StringIO())
    record(tenant=tenant, action="test.later", payload={"n": 99})
    segment = subject_segment(tenant, SUBJECT)
    assert segment.last_seq == 12 and segment.public_key and segment.public_key.startswith("ed25519:")
    _export(tenant, tmp_path)

    result = _run(tmp_path, "checkpoint.jsonl", segment.public_key)
    assert result.returncode == 0, result.stderr
    assert "covers seq 12" in result.stdout

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from audit.checkpoints import public_key_text

    stranger = public_key_text(Ed25519PrivateKey.generate().public_key())
    forged = _run(tmp_path, "checkpoint.jsonl", stranger)
    assert forged.returncode == 1 and "signature does not verify" in forged.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda entries: entries[3]["payload"].update(n=7), "seq 4: its content does not match its hash"),
        (lambda entries: entries[3].update(subject=6), "seq 4: its subject does not match its content"),
        (lambda entries: entries.pop(4), "seq 6: expected seq 5"),
        (
            lambda entries: entries[4].update(hash="0" * 64),
            "seq 6: prev_hash is not the previous entry's hash",
        ),
    ],
    ids=["altered-fact", "altered-subject", "removed-line", "replaced-line"],
)
def test_one_altered_line_makes_the_offline_check_fail(tenant, tmp_path, change, message):
    _history(tenant)
    entries = [json.loads(line) for line in _export(tenant, tmp_path)]
    assert _run(tmp_path).returncode == 0
    change(entries)
    (tmp_path / "segment.jsonl").write_text("\n".join(json.dumps(entry) for entry in entries) + "\n")
    result = _run(tmp_path)
    assert result.returncode == 1
    assert message in result.stderr


def test_a_subject_without_entries_has_an_empty_segment(tenant):
    _history(tenant)
    segment = subject_segment(tenant, 404)
    assert (segment.first_seq, list(segment.lines())) == (None, [])
