"""The part of a tenant's audit chain that concerns one subject, in a form checkable offline.

A subject's entries are scattered through the tenant's chain, so the segment runs from the
subject's first entry to their last (or on to the newest signed checkpoint, when that is
later; entries after the checkpoint are linked but not yet vouched for by a signature): the
subject's entries in full, every other entry reduced to seq, prev_hash and hash, which keeps
other people's facts out of the export while the links between hashes still show a removed
or rewritten line. audit/offline_verify.py checks it with the standard library alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db.models import Max, Min

from audit.anchoring import trusted_keys
from audit.chain import canonical_json, format_timestamp
from audit.checkpoints import public_key_text
from audit.models import AuditCheckpoint, AuditEntry
from tenancy.models import Tenant

VERIFIER_SOURCE = Path(__file__).with_name("offline_verify.py")
# Entries are read from the database in chunks of this many rows, whatever the segment's length.
CHUNK = 2000


@dataclass(frozen=True)
class SubjectSegment:
    tenant: Tenant
    subject_id: int
    first_seq: int | None  # None: no entry concerns the subject
    last_seq: int | None  # the subject's last entry, or the newest checkpoint's seq when later
    checkpoint_line: str | None
    public_key: str | None  # the key that signed the checkpoint, as ed25519:<base64>

    def lines(self) -> Iterator[str]:
        """One JSON line per entry from first_seq to last_seq, in seq order."""
        if self.first_seq is None or self.last_seq is None:
            return
        rows = (
            AuditEntry.objects.for_tenant(self.tenant)
            .filter(seq__gte=self.first_seq, seq__lte=self.last_seq)
            .order_by("seq")
            .values(
                "seq",
                "at",
                "actor_id",
                "action",
                "target_type",
                "target_id",
                "payload",
                "subject_ref",
                "prev_hash",
                "hash",
            )
        )
        for row in rows.iterator(chunk_size=CHUNK):
            if row["subject_ref"] != self.subject_id:
                yield canonical_json({"seq": row["seq"], "prev_hash": row["prev_hash"], "hash": row["hash"]})
                continue
            yield canonical_json(
                {
                    "tenant": self.tenant.pk,
                    "seq": row["seq"],
                    "at": format_timestamp(row["at"]),
                    "actor": row["actor_id"],
                    "action": row["action"],
                    "target_type": row["target_type"],
                    "target_id": row["target_id"],
                    "payload": row["payload"],
                    "subject": row["subject_ref"],
                    "prev_hash": row["prev_hash"],
                    "hash": row["hash"],
                }
            )


def subject_segment(tenant: Tenant, subject_id: int) -> SubjectSegment:
    span = (
        AuditEntry.objects.for_tenant(tenant)
        .filter(subject_ref=subject_id)
        .aggregate(first=Min("seq"), last=Max("seq"))
    )
    first, last = span["first"], span["last"]
    checkpoint = None
    if first is not None:
        # The newest signed checkpoint that covers any of the subject's entries vouches for the most.
        checkpoint = AuditCheckpoint.objects.filter(tenant=tenant, seq__gte=first).order_by("-seq").first()
    line = public_key = None
    if checkpoint is not None:
        last = max(last, checkpoint.seq)
        line = checkpoint.line
        signer = json.loads(json.loads(checkpoint.line)["checkpoint"])["key_id"]
        key = trusted_keys().get(signer)
        public_key = public_key_text(key) if key is not None else None
    return SubjectSegment(tenant, subject_id, first, last, line, public_key)
