"""What a legal reviewer takes away: consent history per subject and deletion certificates (JSON, CSV).

The printable HTML versions are the dashboard pages themselves (print styles in
their templates); these functions build the same facts as data.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.http import HttpResponse
from django.utils import timezone

from consent.models import (
    ConsentLink,
    ConsentRecord,
    DeletionCertificate,
    ErasureRequest,
    LinkDelivery,
    RetentionSchedule,
    Subject,
)
from consent.status import subject_status
from tenancy.spreadsheet import SpreadsheetSafeWriter


def _when(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def schedule_facts(schedule: RetentionSchedule) -> dict[str, Any]:
    return {
        "id": schedule.pk,
        "version": schedule.version,
        "title": schedule.title,
        "years_after_last_interaction": schedule.years_after_last_interaction,
        "days_after_purpose_satisfied": schedule.days_after_purpose_satisfied,
        "statement": schedule.statement,
        "sha256": schedule.sha256,
        "published_at": _when(schedule.published_at),
    }


def record_facts(record: ConsentRecord) -> dict[str, Any]:
    revocation = getattr(record, "revocation", None)
    return {
        "id": record.pk,
        "subject_id": record.subject_id,
        "template_id": record.template_id,
        "template_version": record.template_version,
        "template_sha256": record.template_sha256,
        "retention_schedule_id": record.retention_schedule_id,
        "purposes": list(record.purposes),
        "intended_uses": record.intended_uses,
        "channels": list(record.channels),
        "territories": list(record.territories),
        "representation": record.representation,
        "representation_detail": record.representation_detail,
        "identity_verification": record.identity_verification,
        "valid_from": _when(record.valid_from),
        "expires_at": _when(record.expires_at),
        "capture_channel": record.capture_channel,
        "delivered_to": record.delivered_to,
        "delivered_at": _when(record.delivered_at),
        "code_verified_at": _when(record.code_verified_at),
        "handover_id": record.handover_id,
        "signer_full_name": record.signer_full_name,
        "signed_at": _when(record.signed_at),
        "signer_ip": record.signer_ip,
        "signer_user_agent": record.signer_user_agent,
        "link_id": record.link_id,
        "link_token_sha256": record.link_token_sha256,
        "revoked_at": _when(revocation.revoked_at) if revocation else None,
        "revocation_channel": revocation.channel if revocation else None,
        "revocation_received_via": revocation.received_via if revocation else None,
        "revocation_reason": revocation.reason if revocation else None,
        "revocation_recorded_by": revocation.recorded_by_id if revocation else None,
    }


def link_facts(link: ConsentLink) -> dict[str, Any]:
    return {
        "id": link.pk,
        "template_id": link.template_id,
        "purposes_offered": list(link.purposes_offered),
        "sign_by": _when(link.sign_by),
        "sent_by": link.created_by_id,
        "sent_at": _when(link.created_at),
        "sent_to": link.sent_to,
        "deliveries": [delivery_facts(delivery) for delivery in link.deliveries.all()],
        "signed": getattr(link, "record", None) is not None,
    }


def delivery_facts(delivery: LinkDelivery) -> dict[str, Any]:
    return {
        "id": delivery.pk,
        "kind": delivery.kind,
        "handover_id": delivery.handover_id,
        "sent_to": delivery.sent_to,
        "attempted_at": _when(delivery.attempted_at),
        "ok": delivery.ok,
        "error": delivery.error,
        "requested_by": delivery.requested_by_id,
    }


def certificate_facts(certificate: DeletionCertificate) -> dict[str, Any]:
    return {
        "id": certificate.pk,
        "certificate": str(certificate.public_id),
        "subject_id": certificate.subject_id,
        "scope": certificate.scope,
        "trigger": certificate.trigger,
        "reason": certificate.reason,
        "requested_by": certificate.requested_by_id,
        "started_at": _when(certificate.started_at),
        "key_id": str(certificate.key_id) if certificate.key_id else None,
        "key_destroyed": certificate.key_destroyed_at is not None,
        "key_destroyed_at": _when(certificate.key_destroyed_at),
        "files_by_kind": dict(certificate.destroyed_counts),
        "files_destroyed": certificate.files_destroyed,
        "file_ids": list(certificate.file_ids),
        "stray_files_removed": certificate.stray_files_removed,
        "cancelled_jobs": list(certificate.cancelled_jobs),
        "withdrawn_outputs": list(certificate.withdrawn_outputs),
        "completed_at": _when(certificate.completed_at),
    }


def erasure_request_facts(request: ErasureRequest) -> dict[str, Any]:
    """Who started an erasure, who decided on it and when: the two-person rule's evidence."""
    return {
        "id": request.pk,
        "trigger": request.trigger,
        "revocation_id": request.revocation_id,
        "state": request.state,
        "requested_by": request.requested_by_id,
        "requested_at": _when(request.requested_at),
        "deadline": _when(request.deadline),
        "decided_by": request.decided_by_id,
        "decided_at": _when(request.decided_at),
        "decision_reason": request.decision_reason,
        "certificate_id": request.certificate_id,
    }


def history_document(subject: Subject) -> dict[str, Any]:
    """Everything a reviewer needs about one subject's consent, as of now."""
    status = subject_status(subject)
    return {
        "subject": {
            "id": subject.pk,
            "display_name": subject.display_name,
            "internal_reference": subject.internal_reference,
            "status": status.code,
            "purposes_in_force": list(status.purposes),
            "last_interaction_at": _when(subject.last_interaction_at),
            "purpose_satisfied_at": _when(subject.purpose_satisfied_at),
        },
        "retention_schedule_at_collection": schedule_facts(subject.retention_schedule),
        "consent_records": [record_facts(record) for record in subject.records.all()],
        "consent_links": [link_facts(link) for link in subject.links.all()],
        "deletion_certificates": [certificate_facts(c) for c in subject.deletion_certificates.all()],
        "erasure_requests": [erasure_request_facts(r) for r in subject.erasure_requests.all()],
        "exported_at": _when(timezone.now()),
    }


def _csv_cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


def csv_text(rows: Iterable[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = SpreadsheetSafeWriter(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(column)) for column in columns])
    return buffer.getvalue()


RECORD_COLUMNS = [
    "id",
    "subject_id",
    "signed_at",
    "signer_full_name",
    "purposes",
    "valid_from",
    "expires_at",
    "intended_uses",
    "channels",
    "territories",
    "representation",
    "representation_detail",
    "identity_verification",
    "template_id",
    "template_version",
    "template_sha256",
    "retention_schedule_id",
    "capture_channel",
    "delivered_to",
    "delivered_at",
    "code_verified_at",
    "handover_id",
    "signer_ip",
    "signer_user_agent",
    "link_id",
    "link_token_sha256",
    "revoked_at",
    "revocation_channel",
    "revocation_received_via",
    "revocation_reason",
    "revocation_recorded_by",
]
CERTIFICATE_COLUMNS = [
    "id",
    "certificate",
    "subject_id",
    "scope",
    "trigger",
    "reason",
    "requested_by",
    "started_at",
    "key_id",
    "key_destroyed",
    "key_destroyed_at",
    "files_by_kind",
    "files_destroyed",
    "file_ids",
    "stray_files_removed",
    "cancelled_jobs",
    "withdrawn_outputs",
    "completed_at",
]


def attachment(content: str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


def json_attachment(document: Any, filename: str) -> HttpResponse:
    return attachment(
        json.dumps(document, ensure_ascii=False, indent=2), "application/json; charset=utf-8", filename
    )


def csv_attachment(rows: Iterable[dict[str, Any]], columns: list[str], filename: str) -> HttpResponse:
    return attachment(csv_text(rows, columns), "text/csv; charset=utf-8", filename)


def certificates_attachment(
    certificates: Iterable[DeletionCertificate], tenant_slug: str, file_format: str
) -> HttpResponse:
    """All of a tenant's deletion certificates as a JSON document or a CSV table."""
    rows = [certificate_facts(certificate) for certificate in certificates]
    name = f"deletion-certificates-{tenant_slug}.{file_format}"
    if file_format == "json":
        return json_attachment({"tenant": tenant_slug, "deletion_certificates": rows}, name)
    return csv_attachment(rows, CERTIFICATE_COLUMNS, name)
