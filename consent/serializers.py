"""API representations of the consent app; inputs are validated again by consent.actions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rest_framework import serializers

from consent import exports
from consent.actions.erasure_requests import MAX_DECISION_REASON_CHARS
from consent.models import (
    Asset,
    ConsentLink,
    ConsentRecord,
    ConsentTemplate,
    DeletionCertificate,
    ErasureRequest,
    LinkDelivery,
    Purpose,
    RetentionSchedule,
    Subject,
)
from consent.status import link_status, subject_status
from tenancy.api import TenantPrimaryKeyRelatedField


class SubjectSerializer(serializers.ModelSerializer[Subject]):
    status = serializers.SerializerMethodField(help_text="derived from the consent rows")
    status_label = serializers.SerializerMethodField()
    purposes_in_force = serializers.SerializerMethodField()
    retention_version = serializers.IntegerField(source="retention_schedule.version", read_only=True)

    class Meta:
        model = Subject
        fields = [
            "id",
            "display_name",
            "contact_email",
            "internal_reference",
            "status",
            "status_label",
            "purposes_in_force",
            "retention_schedule",
            "retention_version",
            "enrollment_photo",
            "last_interaction_at",
            "purpose_satisfied_at",
            "created_at",
        ]
        read_only_fields = [
            "id",
            "retention_schedule",
            "enrollment_photo",
            "last_interaction_at",
            "purpose_satisfied_at",
            "created_at",
        ]

    def to_representation(self, instance: Subject) -> dict[str, Any]:
        """The status once per subject: its three fields come from one reading at one moment (computing
        it per field cost three passes over the records, and could straddle a consent's expiry)."""
        self._status = subject_status(instance)
        return dict(super().to_representation(instance))

    def get_status(self, subject: Subject) -> str:
        return self._status.code

    def get_status_label(self, subject: Subject) -> str:
        return self._status.label

    def get_purposes_in_force(self, subject: Subject) -> list[str]:
        return list(self._status.purposes)


class ErasureRequestSerializer(serializers.ModelSerializer[ErasureRequest]):
    overdue = serializers.BooleanField(source="is_overdue", read_only=True)

    class Meta:
        model = ErasureRequest
        fields = [
            "id",
            "subject",
            "trigger",
            "revocation",
            "state",
            "requested_by",
            "requested_at",
            "deadline",
            "overdue",
            "decided_by",
            "decided_at",
            "decision_reason",
            "certificate",
        ]
        read_only_fields = fields


class RevocationOut(serializers.Serializer[Any]):
    revoked_at = serializers.DateTimeField()
    channel = serializers.CharField()
    received_via = serializers.CharField()
    reason = serializers.CharField()
    erasure_request = ErasureRequestSerializer(
        read_only=True,
        allow_null=True,
        default=None,
        help_text="Recorded by staff and ending the last consent in force: the erasure awaiting an admin.",
    )


class ConsentRecordSerializer(serializers.ModelSerializer[ConsentRecord]):
    revocation = RevocationOut(read_only=True, allow_null=True, default=None)

    class Meta:
        model = ConsentRecord
        fields = [
            "id",
            "subject",
            "link",
            "template",
            "template_version",
            "template_sha256",
            "retention_schedule",
            "purposes",
            "intended_uses",
            "channels",
            "territories",
            "representation",
            "representation_detail",
            "identity_verification",
            "valid_from",
            "expires_at",
            "capture_channel",
            "signer_full_name",
            "signed_at",
            "signer_ip",
            "signer_user_agent",
            "link_token_sha256",
            "delivered_to",
            "delivered_at",
            "code_verified_at",
            "handover",
            "revocation",
        ]
        read_only_fields = fields


class LinkDeliverySerializer(serializers.ModelSerializer[LinkDelivery]):
    class Meta:
        model = LinkDelivery
        fields = ["id", "kind", "handover", "sent_to", "attempted_at", "ok", "error"]
        read_only_fields = fields


class ConsentLinkSerializer(serializers.ModelSerializer[ConsentLink]):
    """A link as staff see it: its terms and whether it was delivered and signed, never its URL."""

    signed = serializers.SerializerMethodField()
    delivery = serializers.SerializerMethodField(
        help_text="the last e-mail of the link itself: delivered, failed or not_sent"
    )
    delivered_at = serializers.SerializerMethodField(help_text="the last accepted e-mail of the link")
    open = serializers.SerializerMethodField(help_text="can still be signed (so re-sent or signed in person)")
    deliveries = LinkDeliverySerializer(many=True, read_only=True)

    class Meta:
        model = ConsentLink
        fields = [
            "id",
            "subject",
            "template",
            "purposes_offered",
            "intended_uses",
            "channels",
            "territories",
            "valid_from",
            "expires_at",
            "identity_verification",
            "sign_by",
            "sent_to",
            "created_at",
            "signed",
            "delivery",
            "delivered_at",
            "open",
            "deliveries",
        ]
        read_only_fields = fields

    def to_representation(self, instance: ConsentLink) -> dict[str, Any]:
        """The link's status once per link, for its four fields (as SubjectSerializer does)."""
        self._status = link_status(instance)
        return dict(super().to_representation(instance))

    def get_signed(self, link: ConsentLink) -> bool:
        return self._status.signed

    def get_delivery(self, link: ConsentLink) -> str:
        return self._status.delivery

    def get_delivered_at(self, link: ConsentLink) -> datetime | None:
        return self._status.delivered_at

    def get_open(self, link: ConsentLink) -> bool:
        return self._status.open


class SendLinkSerializer(serializers.Serializer[Any]):
    template = TenantPrimaryKeyRelatedField(ConsentTemplate, help_text="id of a consent template version")
    purposes = serializers.ListField(
        child=serializers.ChoiceField(choices=Purpose.choices), allow_empty=False
    )
    intended_uses = serializers.CharField()
    identity_verification = serializers.CharField(max_length=300)
    channels = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, default=list
    )
    territories = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, default=list
    )
    valid_from = serializers.DateTimeField(required=False, allow_null=True, default=None)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    sign_within_hours = serializers.IntegerField(required=False, allow_null=True, default=None)


class LinkChoiceSerializer(serializers.Serializer[Any]):
    link = TenantPrimaryKeyRelatedField(ConsentLink, help_text="id of one of this subject's consent links")


class ContactSerializer(serializers.Serializer[Any]):
    contact_email = serializers.EmailField(allow_blank=True)


class HandoverStartedSerializer(serializers.Serializer[Any]):
    handover = serializers.IntegerField()
    link = serializers.IntegerField()
    code_expires_at = serializers.DateTimeField()
    code_delivery = LinkDeliverySerializer(
        help_text="the code's e-mail to the subject (the code is never shown)"
    )
    url = serializers.CharField(
        help_text="the handover page to open, signed out, on the subject's device; it signs nothing without "
        "the e-mailed code"
    )


class RevokeSerializer(serializers.Serializer[Any]):
    record = TenantPrimaryKeyRelatedField(
        ConsentRecord, help_text="id of the consent record the subject withdrew"
    )
    received_via = serializers.CharField(max_length=100)
    reason = serializers.CharField()


class ReasonSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField()


class DeclineSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(max_length=MAX_DECISION_REASON_CHARS)


class ConsentCheckSerializer(serializers.Serializer[Any]):
    purpose = serializers.CharField()
    allowed = serializers.BooleanField()
    record = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_null=True)


class ConsentTemplateSerializer(serializers.ModelSerializer[ConsentTemplate]):
    class Meta:
        model = ConsentTemplate
        fields = ["id", "name", "version", "body", "sha256", "created_at"]
        read_only_fields = ["id", "version", "sha256", "created_at"]


class RetentionScheduleSerializer(serializers.ModelSerializer[RetentionSchedule]):
    class Meta:
        model = RetentionSchedule
        fields = [
            "id",
            "version",
            "title",
            "years_after_last_interaction",
            "days_after_purpose_satisfied",
            "statement",
            "sha256",
            "published_at",
        ]
        read_only_fields = ["id", "version", "statement", "sha256", "published_at"]


class DeletionCertificateSerializer(serializers.ModelSerializer[DeletionCertificate]):
    class Meta:
        model = DeletionCertificate
        fields = ["id"]

    def to_representation(self, instance: DeletionCertificate) -> dict[str, Any]:
        # One definition of what a certificate says, shared with the JSON/CSV exports.
        return exports.certificate_facts(instance)


class AssetSerializer(serializers.ModelSerializer[Asset]):
    class Meta:
        model = Asset
        fields = [
            "id",
            "subject",
            "kind",
            "size_bytes",
            "content_type",
            "label",
            "source",
            "quality",
            "retain_until",
            "created_at",
        ]
        read_only_fields = fields


class RejectedPhotoSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField()


class IntakeReportSerializer(serializers.Serializer[Any]):
    accepted = AssetSerializer(many=True)
    rejected = RejectedPhotoSerializer(many=True)
