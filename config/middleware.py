"""Project-wide HTTP middleware."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import add_never_cache_headers


class NoStoreMiddleware:
    """Marks every response `Cache-Control: no-store, private` unless its view chose a policy.

    Nearly every page shows personal data (subjects, consent records, audit
    entries), and the public consent pages show the subject's own; none gains
    from a browser's or a proxy's cache, and a shared computer's back button or
    a caching proxy must not replay one. Marking all of them, rather than the
    ones judged personal, cannot miss a page added later.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response
