"""Who a login attempt comes from, and what a locked-out client is told (django-axes' hooks).

DRF's throttles and django-axes must agree on the client address, or one limit
could be dodged where the other holds; both therefore use DRF's reading of
X-Forwarded-For under `NUM_PROXIES` (= LIKENESS_TRUSTED_PROXIES): the header is
ignored without a trusted proxy, and behind N proxies the N-th entry from the
right, the one the outermost trusted proxy appended, is the client.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from rest_framework.throttling import BaseThrottle


def client_address(request: HttpRequest) -> str | None:
    """The client's IP address as DRF's throttles see it; the peer address when that is not an address.

    A forwarded entry that is no IP address only comes from a misconfigured proxy
    count (a client writing the header itself); falling back to the peer keeps the
    attempt countable instead of failing to store it.
    """
    candidate = BaseThrottle().get_ident(request)  # type: ignore[arg-type]  # reads request.META only
    peer = request.META.get("REMOTE_ADDR")
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return peer
    return str(candidate)


def lockout_message() -> str:
    minutes = settings.LIKENESS_LOGIN_COOLOFF_MINUTES
    return (
        "Too many failed logins for this account or from this address. "
        f"Logging in is blocked for up to {minutes} minutes; try again later."
    )


def lockout_response(request: HttpRequest, *unused: Any) -> HttpResponse:
    """429 for a login refused during a lockout: JSON for the API, the login page for people.

    The same answer whether or not the username exists, so a lockout reveals no
    account. django-axes passes the original response and credentials in a
    different order on its sync and async paths; neither is needed here.
    """
    response: HttpResponse
    if request.path_info.startswith("/api/"):
        response = JsonResponse({"detail": lockout_message()}, status=429)
    else:
        context = {"form": AuthenticationForm(request), "lockout_message": lockout_message()}
        response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(settings.LIKENESS_LOGIN_COOLOFF_MINUTES * 60)
    return response
