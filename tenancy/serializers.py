from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers

from tenancy.models import Membership, Role, Tenant


class MembershipSerializer(serializers.ModelSerializer[Membership]):
    username = serializers.CharField(source="user.username", help_text="the member's username")
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["id", "user_id", "username", "role", "created_at"]
        read_only_fields = ["id", "user_id", "created_at"]

    def validate_username(self, value: str) -> Any:
        if self.instance is not None and value != self.instance.user.username:
            raise serializers.ValidationError("The member cannot be changed; add a new membership instead.")
        user = get_user_model()._default_manager.filter(username=value, is_active=True).first()
        if user is None:
            raise serializers.ValidationError("No active user with this username.")
        return user


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
