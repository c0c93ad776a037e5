from __future__ import annotations

from typing import Any

from rest_framework import serializers

from tenancy.models import Invitation, Membership, Role, Tenant


class MembershipSerializer(serializers.ModelSerializer[Membership]):
    """Read, and change the role; memberships are created only by accepting an invitation."""

    username = serializers.CharField(
        source="user.username", read_only=True, help_text="the member's username"
    )
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["id", "user_id", "username", "role", "created_at"]
        read_only_fields = ["id", "user_id", "username", "created_at"]


class InvitationSerializer(serializers.ModelSerializer[Invitation]):
    email = serializers.EmailField(max_length=254, help_text="where the invitation link is sent")
    role = serializers.ChoiceField(choices=Role.choices)
    status = serializers.SerializerMethodField()

    class Meta:
        model = Invitation
        fields = [
            "id",
            "email",
            "role",
            "status",
            "created_at",
            "expires_at",
            "last_sent_at",
            "send_count",
            "emailed_at",
            "accepted_at",
            "revoked_at",
        ]
        read_only_fields = [name for name in fields if name not in ("email", "role")]

    def get_status(self, invitation: Invitation) -> str:
        """pending, expired, accepted or revoked."""
        return invitation.status().value


class TenantSerializer(serializers.ModelSerializer[Tenant]):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "settings", "created_at", "role"]
        read_only_fields = ["id", "slug", "created_at", "role"]

    def get_role(self, tenant: Tenant) -> str | None:
        membership = self.context.get("membership")
        return membership.role if membership is not None else None

    def validate_settings(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("settings must be a JSON object.")
        return value


class MeMembershipSerializer(serializers.Serializer[Any]):
    tenant = serializers.CharField(source="tenant.slug")
    tenant_name = serializers.CharField(source="tenant.name")
    role = serializers.CharField()


class TokenRequestSerializer(serializers.Serializer[dict[str, str]]):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False, write_only=True)
