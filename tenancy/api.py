"""DRF base classes that make tenant scoping impossible to forget.

`TenantScopedViewSet.get_queryset` is final: a subclass defining its own raises
TypeError when the class is created (PostHog's rule), because an override is
exactly how a cross-tenant leak gets written. The queryset is the model's rows
in `request.tenant`, narrowed to what the user may view (role default or a
guardian object grant); other tenants' objects are therefore a plain 404.

Writes go through each app's actions.py: a concrete viewset that accepts a
write method must override the matching perform_* hook, also checked at class
creation, so a bare `serializer.save()` can never bypass the actions module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.db import models
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import Direction
from rest_framework import permissions, routers, serializers, viewsets
from rest_framework.exceptions import APIException, MethodNotAllowed, NotFound
from rest_framework.request import Request
from rest_framework.views import APIView

from tenancy.access import scoped_queryset
from tenancy.context import memberships_of
from tenancy.models import Membership
from tenancy.permissions import has_perm, remember_membership, restrict_to_perm

if TYPE_CHECKING:
    from drf_spectacular.openapi import AutoSchema

TENANT_HEADER = "X-Likeness-Tenant"

# DRF action -> permission verb; anything else must be declared in `extra_action_permissions`.
ACTION_VERBS: dict[str, str] = {
    "list": "view",
    "retrieve": "view",
    "create": "add",
    "update": "change",
    "partial_update": "change",
    "destroy": "delete",
}
_OBJECT_ACTIONS = frozenset({"retrieve", "update", "partial_update", "destroy"})
_WRITE_HOOKS = {
    "post": "perform_create",
    "put": "perform_update",
    "patch": "perform_update",
    "delete": "perform_destroy",
}


class TenantChoiceRequired(APIException):
    """A member of several tenants named none: refused rather than guessed (400)."""

    status_code = 400
    default_code = "tenant_required"

    def __init__(self, memberships: list[Membership]) -> None:
        super().__init__(
            {
                "detail": (
                    f"This account belongs to several tenants: name one in the {TENANT_HEADER} header "
                    "(its slug; GET /api/v1/me/ lists them)."
                ),
                "tenants": [membership.tenant.slug for membership in memberships],
            }
        )


def set_request_tenant(request: Request) -> None:
    """Resolve the active tenant for an API request once DRF has authenticated it.

    The client names the tenant by slug in the X-Likeness-Tenant header; a
    tenant it does not belong to is a 404. Without the header, a user of one
    tenant works in it, and a user of several is refused with 400: neither the
    dashboard session's active tenant (another tab may change it) nor any
    order of the user's tenants decides where a request writes.
    """
    user = request.user
    slug = request.headers.get(TENANT_HEADER)
    membership: Membership | None = None
    if slug and user.is_authenticated and user.is_active:
        membership = (
            Membership.objects.select_related("tenant").filter(user_id=user.pk, tenant__slug=slug).first()
        )
        if membership is None:
            raise NotFound()
    else:
        memberships = memberships_of(user)
        if len(memberships) > 1:
            raise TenantChoiceRequired(memberships)
        membership = memberships[0] if memberships else None
    tenant = membership.tenant if membership is not None else None
    if membership is not None:
        remember_membership(membership)
    for target in (request, request._request):
        target.membership = membership  # type: ignore[attr-defined]
        target.tenant = tenant  # type: ignore[attr-defined]


class TenantPermission(permissions.BasePermission):
    """Action -> "app_label.verb_model" permission, checked with tenancy.permissions.has_perm."""

    message = "You do not have permission to perform this action in this tenant."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not request.user.is_authenticated or getattr(request, "tenant", None) is None:
            return False
        perm = view.required_permission()  # type: ignore[attr-defined]
        if perm is None:
            return False
        if view.is_object_action():  # type: ignore[attr-defined]
            return True  # decided per object, after the tenant-scoped lookup (404 before 403)
        if getattr(view, "action", None) == "list":
            return True  # the queryset itself is narrowed to what the user may view
        return has_perm(request.user, request.tenant, perm)  # type: ignore[attr-defined]

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        perm = view.required_permission()  # type: ignore[attr-defined]
        return perm is not None and has_perm(request.user, request.tenant, perm, obj)  # type: ignore[attr-defined]


class TenantMethodPermission(permissions.BasePermission):
    """For non-model endpoints: `view.method_permissions` maps an HTTP method to the permission it needs."""

    message = TenantPermission.message

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not request.user.is_authenticated or getattr(request, "tenant", None) is None:
            return False
        perm = getattr(view, "method_permissions", {}).get(request.method)
        return perm is not None and has_perm(request.user, request.tenant, perm)  # type: ignore[attr-defined]


class TenantAPIView(APIView):
    """An API endpoint about the active tenant itself (not a model collection)."""

    method_permissions: ClassVar[dict[str, str]] = {}
    permission_classes = [TenantMethodPermission]

    def perform_authentication(self, request: Request) -> None:
        super().perform_authentication(request)
        set_request_tenant(request)


class TenantScopedViewSet(viewsets.ModelViewSet):
    """Base of every API viewset over tenant data: set `queryset_model` and `serializer_class`."""

    queryset_model: ClassVar[type[models.Model] | None] = None
    # Extra @action names -> full permission string ("consent.revoke_consentrecord").
    extra_action_permissions: ClassVar[dict[str, str]] = {}
    permission_classes = [TenantPermission]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__} must not define get_queryset(): tenant and permission scoping is final. "
                "Use refine_queryset() to add select_related/ordering/filters."
            )
        if cls.queryset_model is None:
            return  # an abstract intermediate base
        for method, hook in _WRITE_HOOKS.items():
            if method in cls.http_method_names and getattr(cls, hook) is getattr(viewsets.ModelViewSet, hook):
                raise TypeError(
                    f"{cls.__name__} accepts {method.upper()} but does not override {hook}(): writes must go "
                    "through the app's actions module (or drop the method from http_method_names)."
                )

    # --- tenant & permission plumbing -----------------------------------------------------
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """A method the viewset does not take is 405 for everyone, before any permission is asked.

        The router binds every method of ModelViewSet; without this, DRF checks the
        permission of a dropped action first and answers 403, as if it existed.
        """
        if (request.method or "").lower() not in self.http_method_names:
            raise MethodNotAllowed(request.method or "")
        super().initial(request, *args, **kwargs)

    def perform_authentication(self, request: Request) -> None:
        super().perform_authentication(request)
        set_request_tenant(request)

    def is_object_action(self) -> bool:
        action = getattr(self, "action", None)
        if action in _OBJECT_ACTIONS:
            return True
        handler = getattr(self, action, None) if action else None
        return bool(getattr(handler, "detail", False))

    def required_permission(self) -> str | None:
        """The permission the current action needs; None (denied) for undeclared actions."""
        action = getattr(self, "action", None)
        if action is None:
            return None
        if action in self.extra_action_permissions:
            return self.extra_action_permissions[action]
        verb = ACTION_VERBS.get(action)
        if verb is None or self.queryset_model is None:
            return None
        opts = self.queryset_model._meta
        return f"{opts.app_label}.{verb}_{opts.model_name}"

    def view_permission(self) -> str:
        assert self.queryset_model is not None
        opts = self.queryset_model._meta
        return f"{opts.app_label}.view_{opts.model_name}"

    def refine_queryset(self, queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
        """Hook for select_related/ordering/filters; it receives an already-scoped queryset."""
        return queryset

    def get_queryset(self) -> models.QuerySet[Any]:
        if self.queryset_model is None:
            raise TypeError(f"{type(self).__name__} has no queryset_model.")
        tenant = getattr(self.request, "tenant", None)
        if tenant is None:
            return self.queryset_model._default_manager.none()
        queryset = self.refine_queryset(scoped_queryset(self.queryset_model, tenant))
        return restrict_to_perm(queryset, self.request.user, tenant, self.view_permission())


class TenantScopedReadOnlyViewSet(TenantScopedViewSet):
    """For read-only resources (the audit log): list and retrieve, nothing else."""

    http_method_names = ["get", "head", "options"]


class TenantRouter(routers.DefaultRouter):
    """A DefaultRouter that names routes after `queryset_model` (there is no `queryset` attribute)."""

    def get_default_basename(self, viewset: Any) -> str:
        model = getattr(viewset, "queryset_model", None)
        if model is None:
            return super().get_default_basename(viewset)
        return str(model._meta.model_name)


class TenantPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A writable reference to another tenant-owned object: only objects of the request's tenant exist.

    Another tenant's id gets DRF's usual "object does not exist" error, the
    same as a missing id.
    """

    def __init__(self, model: type[models.Model], **kwargs: Any) -> None:
        self.scoped_model = model
        super().__init__(**kwargs)

    def get_queryset(self) -> models.QuerySet[Any]:
        request = self.context.get("request")
        tenant = getattr(request, "tenant", None)
        if tenant is None:
            return self.scoped_model._default_manager.none()
        return scoped_queryset(self.scoped_model, tenant)


class TenantPrimaryKeyRelatedFieldSchema(OpenApiSerializerFieldExtension):
    """The field's OpenAPI type: its scoped model's primary key.

    drf-spectacular reads a related field's type from `field.queryset`, which this
    field only builds per request; without this extension every such reference
    would be a schema warning typed as a string. Defined beside the field, so
    importing the field registers it.
    """

    target_class = TenantPrimaryKeyRelatedField
    match_subclasses = True

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Direction) -> dict[str, Any]:
        field: TenantPrimaryKeyRelatedField = self.target
        schema: dict[str, Any] = auto_schema._map_model_field(field.scoped_model._meta.pk, direction)
        # As drf-spectacular does for its own related fields: the key is read-only on
        # its model, not in a reference that a client writes.
        schema.pop("readOnly", None)
        return schema
