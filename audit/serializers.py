from __future__ import annotations

from rest_framework import serializers

from audit.exports import COLUMNS
from audit.models import AuditEntry
from audit.verification import ChainStatus


class AuditEntrySerializer(serializers.ModelSerializer[AuditEntry]):
    actor = serializers.SerializerMethodField(help_text="username of the actor, or 'system'")
    subject = serializers.IntegerField(
        source="subject_ref", allow_null=True, help_text="id of the subject the entry is about, if any"
    )

    class Meta:
        model = AuditEntry
        fields = ["id", *COLUMNS]  # the same columns, in the same order, as the CSV and JSON exports
        read_only_fields = fields

    def get_actor(self, entry: AuditEntry) -> str:
        return entry.actor.get_username() if entry.actor is not None else "system"


class ChainReportSerializer(serializers.Serializer[object]):
    tenant_slug = serializers.CharField()
    entries = serializers.IntegerField()
    status = serializers.ChoiceField(
        choices=[status.value for status in ChainStatus],
        help_text="intact: holds and matches its latest signed checkpoint; unanchored: holds, but no "
        "checkpoint outside the database covers it; broken: see problem",
    )
    intact = serializers.BooleanField()
    first_bad_seq = serializers.IntegerField(allow_null=True)
    problem = serializers.CharField()
    anchored_seq = serializers.IntegerField(allow_null=True, help_text="seq the latest checkpoint covers")
    anchored_at = serializers.CharField(allow_null=True, help_text="when the latest checkpoint was signed")
    notes = serializers.ListField(child=serializers.CharField())
