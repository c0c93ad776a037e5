"""View guards: dashboard pages (a member of the active tenant, holding a permission) and public
pages with a secret token in their URL."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, QueryDict
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from tenancy.context import memberships_of
from tenancy.permissions import has_perm

View = Callable[..., HttpResponseBase]


def tenant_member_required(view: View) -> View:
    """Logged in with an active tenant.

    A user of several tenants who has not chosen one goes to the chooser (and
    comes back here after); a user without any membership sees why, with a 403.
    """

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if getattr(request, "tenant", None) is None:
            if memberships_of(request.user):
                query = QueryDict(mutable=True)
                query["next"] = request.get_full_path()
                return redirect(f"{reverse('tenant-choose')}?{query.urlencode(safe='/')}")
            return render(request, "tenancy/no_tenant.html", status=403)
        return view(request, *args, **kwargs)

    return wrapped


def tenant_permission_required(perm: str) -> Callable[[View], View]:
    """For pages without an object: the role (or nothing) grants `perm` in the active tenant.

    Object pages look their object up first (404 for other tenants) and then
    call `check_perm` with it, so a foreign ID never turns into a 403.
    """

    def decorate(view: View) -> View:
        @tenant_member_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            check_perm(request, perm)
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def check_perm(request: HttpRequest, perm: str, obj: Any = None) -> None:
    if not has_perm(request.user, getattr(request, "tenant", None), perm, obj):
        raise PermissionDenied(f"Your role in this tenant does not include {perm}.")


def token_in_url(view: View) -> View:
    """For public pages with a secret token in their URL: never cached, sent on in a Referer, or indexed.

    (same-origin, not no-referrer: with no-referrer browsers send "Origin: null" and the CSRF check fails.)
    """

    @never_cache
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(request, *args, **kwargs)
        response["Referrer-Policy"] = "same-origin"
        response["X-Robots-Tag"] = "noindex, nofollow"
        return response

    return wrapped
