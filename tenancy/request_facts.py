"""Facts read once per request: memberships and permission grants, remembered until the response.

A page asks "may this user do X here?" a dozen times (every button); each
answer used to read the membership row again (12 of the subject page's 26
queries). `ActiveTenantMiddleware` opens a fresh store for each request and
closes it with the response, so a role changed or a membership removed is seen
by the very next request: nothing is kept on the user object or in a process
cache, where it could outlive the request. A write to a membership or to a
guardian object permission during the request empties the store (see
`tenancy.signals`), so a check after the change in the same request reads it
again. Outside a request (Celery tasks, commands) there is no store and every
call reads the database, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

_T = TypeVar("_T")
# One dict per request, mutated in place: contextvars are copied into the threads that
# asgiref runs sync code in, and the copy refers to the same dict.
_store: ContextVar[dict[Hashable, Any] | None] = ContextVar("likeness_request_facts", default=None)


@contextmanager
def request_facts() -> Iterator[None]:
    token = _store.set({})
    try:
        yield
    finally:
        _store.reset(token)


def remembered(key: Hashable, read: Callable[[], _T]) -> _T:
    """`read()` once per request for `key`; outside a request, every time."""
    store = _store.get()
    if store is None:
        return read()
    if key not in store:
        store[key] = read()
    value: _T = store[key]
    return value


def remember(key: Hashable, value: Any) -> None:
    """Record a fact already read (the middleware's membership), so that the first check needs no query."""
    store = _store.get()
    if store is not None:
        store[key] = value


def forget_all() -> None:
    store = _store.get()
    if store is not None:
        store.clear()
