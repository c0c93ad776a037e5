"""Helpers shared by tests of every area (import from tests.support)."""

from __future__ import annotations

import os

import pytest

IS_POSTGRESQL = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))

requires_postgresql = pytest.mark.skipif(
    not IS_POSTGRESQL,
    reason="needs PostgreSQL (set DATABASE_URL=postgres://...; CI and `make test` run on it)",
)


def redis_reachable() -> bool:
    """Whether the Redis at settings.REDIS_URL answers (channel layer, Celery broker)."""
    import redis
    from django.conf import settings

    try:
        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


requires_redis = pytest.mark.skipif(
    not redis_reachable(), reason="needs Redis at REDIS_URL (CI and `make test` provide one)"
)
