"""Helpers shared by tests of every area (import from tests.support)."""

from __future__ import annotations

import os

import pytest

IS_POSTGRESQL = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))

requires_postgresql = pytest.mark.skipif(
    not IS_POSTGRESQL,
    reason="needs PostgreSQL (set DATABASE_URL=postgres://...; CI and `make test` run on it)",
)
