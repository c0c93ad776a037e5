"""The WebSocket base: authenticated, tenant-checked, snapshot first, then the live stream."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.urls import path

from audit.actions import record
from audit.models import AuditEntry
from tenancy.models import Role
from tenancy.realtime import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHENTICATED,
    TenantObjectConsumer,
    object_group,
    publish,
)
from tests.support import requires_redis

pytestmark = [requires_redis, pytest.mark.django_db(transaction=True)]


class EntryConsumer(TenantObjectConsumer):
    model = AuditEntry
    permission = "audit.view_auditentry"

    def snapshot(self, obj: Any) -> dict[str, Any]:
        return {"seq": obj.seq, "action": obj.action}


application = AllowedHostsOriginValidator(
    AuthMiddlewareStack(URLRouter([path("ws/entries/<int:pk>/", EntryConsumer.as_asgi())]))
)


def _headers(client: Any | None, origin: str = "http://localhost") -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", origin.encode()), (b"host", b"localhost")]
    if client is not None:
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return headers


async def _open(pk: int, client: Any | None, origin: str = "http://localhost") -> tuple[bool, Any, Any]:
    communicator = WebsocketCommunicator(application, f"/ws/entries/{pk}/", headers=_headers(client, origin))
    connected, _ = await communicator.connect()
    first = await communicator.receive_output(timeout=5) if connected else None
    return connected, first, communicator


@pytest.fixture
def setup(tenant_factory, member, client_for):
    a, b = tenant_factory(), tenant_factory()
    entry = record(tenant=a, action="test.event", payload={})
    clients = {
        "a-legal": client_for(member(a, Role.LEGAL_REVIEWER), a),
        "a-staff": client_for(member(a, Role.STAFF), a),
        "b-admin": client_for(member(b, Role.ADMIN), b),
    }
    return entry, clients


def test_member_with_permission_gets_snapshot_then_live_events(setup):
    entry, clients = setup

    async def scenario() -> None:
        connected, first, communicator = await _open(entry.pk, clients["a-legal"])
        assert connected
        assert first["type"] == "websocket.send"
        assert json.loads(first["text"]) == {"type": "snapshot", "data": {"seq": 1, "action": "test.event"}}
        await sync_to_async(publish)(object_group(entry), {"step": 3, "of": 10})
        assert await communicator.receive_json_from(timeout=5) == {
            "type": "event",
            "data": {"step": 3, "of": 10},
        }
        await communicator.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize(
    ("who", "pk_of", "code"),
    [
        ("b-admin", "entry", CLOSE_NOT_FOUND),  # another tenant's object...
        ("a-legal", "missing", CLOSE_NOT_FOUND),  # ...answers exactly like a missing one
        ("a-staff", "entry", CLOSE_FORBIDDEN),  # own tenant, role without the permission
        (None, "entry", CLOSE_UNAUTHENTICATED),
    ],
)
def test_refused_sockets_close_with_a_reason_and_join_nothing(setup, who, pk_of, code):
    entry, clients = setup
    pk = entry.pk if pk_of == "entry" else 10**9

    async def scenario() -> None:
        connected, first, communicator = await _open(pk, clients[who] if who else None)
        assert connected
        assert first == {"type": "websocket.close", "code": code}
        await communicator.wait()

    async_to_sync(scenario)()


def test_foreign_origin_is_rejected_before_authentication(setup):
    entry, clients = setup

    async def scenario() -> None:
        communicator = WebsocketCommunicator(
            application,
            f"/ws/entries/{entry.pk}/",
            headers=_headers(clients["a-legal"], "https://evil.example"),
        )
        connected, _ = await communicator.connect()
        assert not connected

    async_to_sync(scenario)()


def test_the_real_asgi_application_checks_websocket_origins():
    from config.asgi import application as real_application

    async def scenario() -> None:
        communicator = WebsocketCommunicator(
            real_application, "/ws/anything/", headers=[(b"origin", b"https://evil.example")]
        )
        connected, _ = await communicator.connect()
        assert not connected

    async_to_sync(scenario)()
