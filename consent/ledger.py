"""The likeness ledger: everything that happened to one subject's likeness, in time order, and its export.

Every audited write about a subject names the subject (audit.chain.subject_reference), so
the ledger's events are one indexed query over the audit log: consent links, signatures and
revocations, photos, reference sets, training runs, model versions, outputs and their review,
releases and downloads, erasures and certificates, whichever app wrote them. The consent
history (consent.exports.history_document) gives the signed texts and their hashes beside
it. The export is a zip an outside counsel can check without the platform: the subject's
segment of the audit chain and the standard-library script that verifies it.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.utils import timezone

from audit.chain import format_timestamp
from audit.exports import COLUMNS, entry_row
from audit.models import AuditEntry
from audit.offline_verify import SegmentError, verify_checkpoint, verify_segment
from audit.segment import VERIFIER_SOURCE, SubjectSegment, subject_segment
from consent.exports import csv_text, history_document
from consent.models import Subject

VERIFY_COMMAND = (
    "python3 chain/verify_chain.py chain/segment.jsonl chain/checkpoint.jsonl $(cat chain/public_key.txt)"
)
VERIFY_COMMAND_UNANCHORED = "python3 chain/verify_chain.py chain/segment.jsonl"


def ledger_events(subject: Subject) -> QuerySet[AuditEntry]:
    """The audit entries about the subject, oldest first (served by the (tenant, subject_ref, seq) index)."""
    return (
        AuditEntry.objects.for_tenant(subject.tenant)
        .filter(subject_ref=subject.pk)
        .select_related("actor")
        .order_by("seq")
    )


@dataclass(frozen=True)
class Integrity:
    """Whether the subject's segment of the chain holds, as the offline script would say."""

    ok: bool
    summary: str
    anchored: bool


def check_integrity(segment: SubjectSegment) -> Integrity:
    """Run the export's own checker in process: the page says what the counsel's run will say."""
    if segment.first_seq is None:
        return Integrity(True, "No audit entry concerns this subject yet.", anchored=False)
    try:
        first, last, full, hashes = verify_segment(segment.lines())
        summary = (
            f"Entries {first}..{last} are linked; the {full} about this subject recompute to their hashes."
        )
        if segment.checkpoint_line and segment.public_key:
            summary += " The " + verify_checkpoint(segment.checkpoint_line, segment.public_key, hashes) + "."
            return Integrity(True, summary, anchored=True)
        summary += " No signed checkpoint covers them yet."
        return Integrity(True, summary, anchored=False)
    except SegmentError as error:
        return Integrity(False, str(error), anchored=False)


def ledger_zip(subject: Subject) -> bytes:
    """ledger.json, events.csv, a printable report.html, and chain/ with the segment and its checker."""
    segment = subject_segment(subject.tenant, subject.pk)
    events = [entry_row(entry) for entry in ledger_events(subject).iterator(chunk_size=2000)]
    history = history_document(subject)
    integrity = check_integrity(segment)
    command = VERIFY_COMMAND if segment.checkpoint_line and segment.public_key else VERIFY_COMMAND_UNANCHORED
    document: dict[str, Any] = {
        "ledger_of": {"tenant": subject.tenant.slug, "subject_id": subject.pk},
        "exported_at": format_timestamp(timezone.now()),
        "consent": history,
        "events": events,
        "chain": {
            "first_seq": segment.first_seq,
            "last_seq": segment.last_seq,
            "holds": integrity.ok,
            "summary": integrity.summary,
            "verify_with": command,
        },
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ledger.json", json.dumps(document, ensure_ascii=False, indent=2))
        archive.writestr("events.csv", csv_text(events, COLUMNS))
        archive.writestr(
            "report.html",
            render_to_string(
                "consent/ledger_report.html",
                {"subject": subject, "document": document, "events": events, "integrity": integrity},
            ),
        )
        archive.writestr("chain/segment.jsonl", "".join(line + "\n" for line in segment.lines()))
        if segment.checkpoint_line and segment.public_key:
            archive.writestr("chain/checkpoint.jsonl", segment.checkpoint_line + "\n")
            archive.writestr("chain/public_key.txt", segment.public_key + "\n")
        archive.write(VERIFIER_SOURCE, "chain/verify_chain.py")
        archive.writestr("README.txt", _readme(subject, command))
    return buffer.getvalue()


def _readme(subject: Subject, command: str) -> str:
    return (
        f"Likeness ledger of subject {subject.pk} of tenant {subject.tenant.slug}.\n\n"
        "ledger.json  the consent history (every signed text with its SHA-256) and every audited event\n"
        "events.csv   the same events, one per row\n"
        "report.html  a printable report\n"
        "chain/       the subject's segment of the tenant's hash-chained audit log and its checker\n\n"
        "To check the chain without the platform (Python 3.11+, standard library; the signed\n"
        "checkpoint also needs the `cryptography` package), from this folder:\n\n"
        f"    {command}\n\n"
        "It prints 'ok: ...' when every line holds, or 'FAILED: seq N: ...' and exits with status 1.\n"
        "Entries of other people inside the segment are reduced to their hashes.\n"
    )
