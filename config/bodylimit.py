"""Request-body limits at the ASGI edge, before Django reads a byte of the body.

Django's ASGI handler reads a whole body into a spooled temporary file before
any view or middleware runs, so a limit checked in a view comes too late: the
bytes were already received, buffered and (past FILE_UPLOAD_MAX_MEMORY_SIZE)
written to disk. This middleware sits between the ASGI server (uvicorn, which
hands the body over chunk by chunk as it arrives) and Django. A declared
Content-Length over the route's limit gets a 413 at once, without reading the
body; a chunked body is counted as it streams and cut off with a 413 as soon as
it passes the limit. Django then sees a disconnect and drops the request.

Every route accepts LIKENESS_MAX_REQUEST_BYTES; the photo upload routes named
in UPLOAD_ROUTE_NAMES accept LIKENESS_MAX_UPLOAD_REQUEST_BYTES. The answer is
JSON with a `detail` (as DRF's errors are) under /api/, a short page elsewhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from html import escape
from typing import Any

from django.urls import Resolver404, resolve

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# URL names of the routes that take photos (the dashboard's upload form, the two API actions of a
# subject, the edit jobs, which take a photo to edit and its painted mask, the style-set upload, and
# the verify page and endpoint, which take an image to look up among releases).
UPLOAD_ROUTE_NAMES = frozenset(
    {
        "consent-subject-photos",
        "subject-enrollment-photo",
        "subject-reference-photos",
        "editjob-list",
        "studio-edit",
        "styleset-list",
        "api-verify",
        "release-verify",
    }
)
API_PREFIX = "/api/"


def _mebibytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def too_large_reason(limit: int) -> str:
    return (
        f"The request body is too large: this address accepts at most {limit} bytes "
        f"({_mebibytes(limit)}). Send less at a time."
    )


def _declared_length(scope: Scope) -> int | None:
    """The Content-Length header as a number; None when absent (chunked) or unreadable.

    The server has already refused a malformed or contradictory length, so an
    unreadable one here is left to the stream count.
    """
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitMiddleware:
    """Refuses request bodies over the route's limit with a 413, before the app buffers them."""

    def __init__(self, app: ASGIApp, *, default_limit: int, upload_limit: int) -> None:
        self.app = app
        self.default_limit = default_limit
        self.upload_limit = upload_limit

    def limit_for(self, path: str) -> int:
        try:
            match = resolve(path)
        except Resolver404:
            return self.default_limit
        return self.upload_limit if match.url_name in UPLOAD_ROUTE_NAMES else self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        root = scope.get("root_path", "")
        path = scope["path"][len(root) :] if root and scope["path"].startswith(root) else scope["path"]
        limit = self.limit_for(path)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, send, path, limit)
            return

        received = 0
        exceeded = False
        response_started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # What the app sees is a client that went away: Django drops the request
                    # unanswered, and the 413 below is the only response.
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, counted_receive, tracked_send)
        if exceeded and not response_started:
            await self._refuse(scope, send, path, limit)

    async def _refuse(self, scope: Scope, send: Send, path: str, limit: int) -> None:
        logger.warning("Request body over %d bytes refused (413): %s %s", limit, scope["method"], path)
        reason = too_large_reason(limit)
        if path.startswith(API_PREFIX):
            body = json.dumps({"detail": reason}).encode()
            content_type = b"application/json"
        else:
            body = (
                "<!doctype html><html lang=en><meta charset=utf-8><title>Request too large</title>"
                f"<h1>Request too large</h1><p>{escape(reason)}</p></html>"
            ).encode()
            content_type = b"text/html; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    # The rest of the body is never read, so the connection cannot carry another request.
                    (b"connection", b"close"),
                    (b"cache-control", b"no-store"),
                    (b"content-security-policy", b"default-src 'none'"),
                    (b"x-content-type-options", b"nosniff"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
