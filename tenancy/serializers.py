from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from tenancy.actions import MAX_TOKEN_NAME_CHARS
from tenancy.models import ApiToken, Invitation, Membership, Role, Tenant


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


class ApiTokenSerializer(serializers.ModelSerializer[ApiToken]):
    """A token as its owner sees it later: never its key, only the prefix that tells it apart."""

    active = serializers.SerializerMethodField(help_text="neither revoked nor expired")

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "revoked_reason",
            "active",
        ]
        read_only_fields = fields

    def get_active(self, token: ApiToken) -> bool:
        return token.is_active(timezone.now())


class IssuedApiTokenSerializer(ApiTokenSerializer):
    """The answer that creates a token: the only one that ever carries its key."""

    token = serializers.SerializerMethodField(
        help_text="the key for `Authorization: Token <key>`; shown once"
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = ["token", *ApiTokenSerializer.Meta.fields]
        read_only_fields = fields

    def get_token(self, token: ApiToken) -> str:
        return str(self.context["key"])


class ApiTokenRequestSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField(max_length=MAX_TOKEN_NAME_CHARS, help_text="what the token is for")
    days = serializers.IntegerField(
        required=False, help_text="lifetime in days, at most LIKENESS_API_TOKEN_DAYS (the default)"
    )


class TokenRequestSerializer(serializers.Serializer[dict[str, str]]):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(
        max_length=1024, style={"input_type": "password"}, trim_whitespace=False, write_only=True
    )
    name = serializers.CharField(
        max_length=MAX_TOKEN_NAME_CHARS, default="API login", help_text="what the new token is for"
    )
