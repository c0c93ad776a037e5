"""Live updates to browsers: authenticated, tenant-checked WebSocket consumers and a publisher.

A consumer serves one object (a training job, an edit job...). On connect it
resolves the user's active tenant from the session, looks the object up inside
that tenant (a foreign or missing object closes with the same code, 4404),
checks the permission, joins the object's group, and sends the stored
snapshot; after that it relays what `publish()` sends to the group. Workers
write state to the database first and publish second, so a client that
connects late still starts from the truth.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.db import models
from django.http import Http404

from tenancy.access import get_for_tenant_or_404
from tenancy.context import resolve_membership
from tenancy.permissions import has_perm

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
EVENT_TYPE = "tenant.event"


def object_group(obj: models.Model) -> str:
    """The channel-layer group of one object (ASCII, stable, unique across models)."""
    return f"{obj._meta.app_label}.{obj._meta.model_name}.{obj.pk}"


def publish(group: str, data: dict[str, Any]) -> None:
    """Send `data` to every socket watching `group` (call after the state it reports is committed)."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("No channel layer configured (CHANNEL_LAYERS).")
    async_to_sync(layer.group_send)(group, {"type": EVENT_TYPE, "data": data})


class TenantObjectConsumer(AsyncJsonWebsocketConsumer):
    """Base of per-object live sockets. Subclasses set `model`, `permission`, and implement `snapshot`."""

    model: ClassVar[type[models.Model]]
    permission: ClassVar[str]
    lookup_kwarg: ClassVar[str] = "pk"

    group_name: str | None = None

    def snapshot(self, obj: Any) -> dict[str, Any]:
        """The object's current state as stored, sent first on every connect."""
        raise NotImplementedError

    def _authorize(self) -> tuple[int, Any, dict[str, Any] | None]:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return CLOSE_UNAUTHENTICATED, None, None
        membership = resolve_membership(self.scope.get("session"), user)
        if membership is None:
            return CLOSE_FORBIDDEN, None, None
        lookup = {"pk": self.scope["url_route"]["kwargs"].get(self.lookup_kwarg)}
        try:
            obj = get_for_tenant_or_404(self.model, membership.tenant, **lookup)
        except Http404:
            return CLOSE_NOT_FOUND, None, None
        if not has_perm(user, membership.tenant, self.permission, obj):
            return CLOSE_FORBIDDEN, None, None
        return 0, obj, self.snapshot(obj)

    async def connect(self) -> None:
        code, obj, snapshot = await database_sync_to_async(self._authorize)()
        await self.accept()
        if code:
            await self.close(code=code)
            return
        self.group_name = object_group(obj)
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.send_json({"type": "snapshot", "data": snapshot})

    async def disconnect(self, code: int) -> None:
        if self.group_name is not None:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The stream is one-way: clients change state through the API, never through the socket."""

    async def tenant_event(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "event", "data": event["data"]})
