"""CSV and JSON exports of (a filtered part of) a tenant's audit log, streamed row by row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from audit.chain import canonical_json, format_timestamp
from audit.models import AuditEntry
from tenancy.spreadsheet import SpreadsheetSafeWriter

COLUMNS = [
    "seq",
    "at",
    "actor_id",
    "actor",
    "action",
    "target_type",
    "target_id",
    "subject",
    "payload",
    "prev_hash",
    "hash",
]
FORMATS = ("csv", "json")


def entry_row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": format_timestamp(entry.at),
        "actor_id": entry.actor_id,
        "actor": entry.actor.get_username() if entry.actor is not None else "system",
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "subject": entry.subject_ref,
        "payload": entry.payload,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(entries: QuerySet[AuditEntry]) -> Iterator[str]:
    writer = SpreadsheetSafeWriter(_Echo())
    yield writer.writerow(COLUMNS)
    for entry in entries.iterator(chunk_size=1000):
        row = entry_row(entry)
        row["payload"] = canonical_json(row["payload"])
        yield writer.writerow([row[column] for column in COLUMNS])


def _json_chunks(entries: QuerySet[AuditEntry], tenant_slug: str) -> Iterator[str]:
    yield '{"tenant": ' + json.dumps(tenant_slug) + ', "entries": ['
    for index, entry in enumerate(entries.iterator(chunk_size=1000)):
        yield ("," if index else "") + "\n" + json.dumps(entry_row(entry), ensure_ascii=False)
    yield "\n]}\n"


def export_response(
    entries: QuerySet[AuditEntry], file_format: str, tenant_slug: str
) -> StreamingHttpResponse:
    if file_format not in FORMATS:
        raise ValueError(f"Unknown export format {file_format!r}; use one of {', '.join(FORMATS)}.")
    entries = entries.select_related("actor").order_by("seq")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    if file_format == "csv":
        response = StreamingHttpResponse(_csv_lines(entries), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(_json_chunks(entries, tenant_slug), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="audit-{tenant_slug}-{stamp}.{file_format}"'
    return response
