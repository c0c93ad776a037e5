"""API endpoints of the tenancy app (thin: writes go through tenancy.actions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from tenancy import actions
from tenancy.api import TenantAPIView, TenantScopedViewSet
from tenancy.authentication import ApiTokenAuthentication
from tenancy.context import memberships_of
from tenancy.invitations import send_invitation
from tenancy.models import ApiToken, Invitation, Membership
from tenancy.pagination import TeamListPagination
from tenancy.serializers import (
    ApiTokenRequestSerializer,
    ApiTokenSerializer,
    InvitationSerializer,
    IssuedApiTokenSerializer,
    MembershipSerializer,
    MeMembershipSerializer,
    TenantSerializer,
    TokenRequestSerializer,
)


def _as_api_error(error: DjangoValidationError) -> ValidationError:
    """Field errors of an action under their field's name, as DRF reports its own; others under `detail`."""
    if hasattr(error, "error_dict"):
        return ValidationError(error.message_dict)
    return ValidationError({"detail": error.messages})


class MembershipViewSet(TenantScopedViewSet):
    """Members of the active tenant and their roles (admins change them; reviewers read).

    No POST: an existing account joins only by accepting an invitation (/api/v1/invitations/).
    """

    queryset_model = Membership
    serializer_class = MembershipSerializer
    pagination_class = TeamListPagination
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("user", "tenant").order_by("user__username")

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        membership = serializer.instance
        assert isinstance(membership, Membership)
        role = serializer.validated_data.get("role", membership.role)
        try:
            serializer.instance = actions.change_member_role(
                actor=self.request.user, membership=membership, role=role
            )
        except DjangoValidationError as error:
            raise _as_api_error(error) from None

    def perform_destroy(self, instance: Membership) -> None:
        try:
            actions.remove_member(actor=self.request.user, membership=instance)
        except DjangoValidationError as error:
            raise _as_api_error(error) from None


class InvitationViewSet(TenantScopedViewSet):
    """Invitations into the active tenant (admins): invite an address, re-send, revoke.

    The answer to an invitation is the same whether an account with the address
    exists anywhere or not; `emailed_at` stays empty when the mail could not be sent.
    """

    queryset_model = Invitation
    serializer_class = InvitationSerializer
    http_method_names = ["get", "post", "head", "options"]
    extra_action_permissions = {"resend": "tenancy.add_invitation", "revoke": "tenancy.revoke_invitation"}

    def refine_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("tenant")

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        data = serializer.validated_data
        try:
            issued = actions.invite_member(
                actor=self.request.user,
                tenant=self.request.tenant,  # type: ignore[attr-defined]
                email=data["email"],
                role=data["role"],
            )
        except DjangoValidationError as error:
            raise _as_api_error(error) from None
        send_invitation(self.request._request, issued)
        serializer.instance = issued.invitation

    def _respond(self, change: Callable[[], Invitation]) -> Response:
        try:
            invitation = change()
        except DjangoValidationError as error:
            raise _as_api_error(error) from None
        return Response(self.get_serializer(invitation).data)

    @extend_schema(request=None, responses={200: InvitationSerializer})
    @action(detail=True, methods=["post"])
    def resend(self, request: Request, pk: str | None = None) -> Response:
        """A new link (the old one stops working) and a fresh expiry, e-mailed again."""

        def resend() -> Invitation:
            issued = actions.resend_invitation(actor=request.user, invitation=self.get_object())
            send_invitation(request._request, issued)
            return issued.invitation

        return self._respond(resend)

    @extend_schema(request=None, responses={200: InvitationSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        return self._respond(
            lambda: actions.revoke_invitation(actor=request.user, invitation=self.get_object())
        )


class CurrentTenantView(TenantAPIView):
    """The active tenant: everyone in it reads it; admins rename it and change its settings."""

    method_permissions = {
        "GET": "tenancy.view_tenant",
        "HEAD": "tenancy.view_tenant",
        "OPTIONS": "tenancy.view_tenant",
        "PATCH": "tenancy.change_tenant",
    }
    serializer_class = TenantSerializer
    http_method_names = ["get", "patch", "head", "options"]

    def _serialize(self, request: Request, **kwargs: Any) -> TenantSerializer:
        return TenantSerializer(request.tenant, context={"membership": request.membership}, **kwargs)  # type: ignore[attr-defined]

    @extend_schema(responses=TenantSerializer)
    def get(self, request: Request) -> Response:
        return Response(self._serialize(request).data)

    @extend_schema(request=TenantSerializer, responses=TenantSerializer)
    def patch(self, request: Request) -> Response:
        serializer = self._serialize(request, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            actions.update_tenant(
                actor=request.user,
                tenant=request.tenant,  # type: ignore[attr-defined]
                name=serializer.validated_data.get("name"),
                settings=serializer.validated_data.get("settings"),
            )
        except DjangoValidationError as error:
            raise _as_api_error(error) from None
        return Response(self._serialize(request).data)


class MeView(APIView):
    """Who the token belongs to and which tenants it may name in the X-Likeness-Tenant header."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses=inline_serializer(
            "Me", {"username": serializers.CharField(), "memberships": MeMembershipSerializer(many=True)}
        )
    )
    def get(self, request: Request) -> Response:
        memberships = memberships_of(request.user)
        return Response(
            {
                "username": request.user.get_username(),
                "memberships": MeMembershipSerializer(memberships, many=True).data,
            }
        )


class LoginRateThrottle(AnonRateThrottle):
    rate = "20/min"


class TokenView(APIView):
    """Exchange a username and password for a new named API token (audited as `auth.token_issued`).

    django-axes guards the `authenticate` call: during a lockout of the account
    or the client address its middleware answers 429, the right password included.
    """

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [LoginRateThrottle]

    @extend_schema(request=TokenRequestSerializer, responses=IssuedApiTokenSerializer)
    def post(self, request: Request) -> Response:
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(
            request._request,
            username=serializer.validated_data["username"],
            password=serializer.validated_data["password"],
        )
        if user is None or not user.is_active:
            raise ValidationError({"detail": "Unable to log in with these credentials."})
        return _issued(
            user, serializer.validated_data["name"], None, via="password", status_code=status.HTTP_200_OK
        )


def _issued(user: Any, name: str, days: int | None, *, via: str, status_code: int) -> Response:
    try:
        token, key = actions.issue_api_token(user, name=name, days=days, via=via)
    except DjangoValidationError as error:
        raise _as_api_error(error) from None
    return Response(IssuedApiTokenSerializer(token, context={"key": key}).data, status=status_code)


class ApiTokenListView(generics.ListAPIView[ApiToken]):
    """The caller's own API tokens, newest first, without their keys; a logged-in session creates one.

    A token cannot create tokens: a leaked key must not outlive its own expiry or
    revocation by minting successors, so creating one needs the password (the
    token endpoint) or a logged-in session (this endpoint, or the Account page).
    """

    permission_classes = [IsAuthenticated]
    serializer_class = ApiTokenSerializer

    def get_queryset(self) -> QuerySet[ApiToken]:
        return ApiToken.owned_by(self.request.user)

    @extend_schema(request=ApiTokenRequestSerializer, responses={201: IssuedApiTokenSerializer})
    def post(self, request: Request) -> Response:
        if isinstance(request.successful_authenticator, ApiTokenAuthentication):
            raise PermissionDenied(
                "A token cannot create tokens: use your password (POST /api/v1/auth/token/) "
                "or the Account page of the dashboard."
            )
        serializer = ApiTokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        return _issued(
            request.user, data["name"], data.get("days"), via="session", status_code=status.HTTP_201_CREATED
        )


class ApiTokenDetailView(generics.RetrieveDestroyAPIView[ApiToken]):
    """One of the caller's tokens; DELETE revokes it at once (the row stays, marked revoked)."""

    tenant_isolation_exempt = (
        "a user's own API token, not tenant data: another user's token is a 404 "
        "(tests/platform/test_api_tokens.py)"
    )
    permission_classes = [IsAuthenticated]
    serializer_class = ApiTokenSerializer

    def get_queryset(self) -> QuerySet[ApiToken]:
        return ApiToken.owned_by(self.request.user)

    def perform_destroy(self, instance: ApiToken) -> None:
        actions.revoke_api_token(actor=self.request.user, token=instance)
