"""Makes the active tenant part of every request (after authentication)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from tenancy.context import apply_to_request
from tenancy.request_facts import request_facts


class ActiveTenantMiddleware:
    """Sets `request.tenant` / `request.membership` from the session's active tenant.

    It also opens the request's store of facts read once (tenancy.request_facts),
    closed when the response leaves, so no membership outlives its request.

    API requests authenticated by token (after middleware runs) get theirs set
    again by the API base view once DRF has authenticated them.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with request_facts():
            apply_to_request(request)
            return self.get_response(request)
