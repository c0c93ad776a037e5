"""The production database setup docs/operations.md recommends: the app runs as a role owning nothing.

CI's own role owns the tables (the tamper tests need that); here a separate role gets only what
`grant_application_role` grants, runs the app through Django in a separate process, and is shown
unable to do what an owner could: switch off or go around the audit log's append-only triggers.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from psycopg import sql

from audit.actions import record
from tests.support import requires_postgresql

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [requires_postgresql, pytest.mark.django_db(transaction=True)]


def _as_owner(statement: sql.Composable) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement.as_string(cursor.connection))


@pytest.fixture
def app_role() -> Iterator[tuple[str, str]]:
    name, password = f"likeness_app_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    _as_owner(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
    yield name, password
    _as_owner(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    _as_owner(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_non_owner_role_runs_the_app_and_cannot_touch_the_audit_log(
    app_role, tenant_factory, tmp_path
) -> None:
    name, password = app_role
    said = io.StringIO()
    call_command("grant_application_role", name, stdout=said)
    assert "run this again after every migrate" in said.getvalue()
    tenant = tenant_factory()
    record(tenant=tenant, action="test.as_owner")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": f"postgres://{name}:{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "LIKENESS_AUDIT_ANCHOR_SINKS": f"file:{tmp_path / 'audit-anchors.jsonl'}",
    }
    append = (
        "from audit.actions import record; from tenancy.models import Tenant; "
        f"print(record(tenant=Tenant.objects.get(pk={tenant.pk}), action='test.as_app_role').seq)"
    )
    for command, expected in (
        (["shell", "-c", append], "2"),  # the tenant row lock and the chain head move as this role
        (["anchor_audit"], "1 new checkpoint(s)"),  # the outbox tables are the app role's to write
        (["verify_audit"], "audit chains intact"),
    ):
        done = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert expected in done.stdout

    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], dbname=db["NAME"], user=name, password=password, autocommit=True
    ) as as_app:
        for statement in (
            "ALTER TABLE audit_auditentry DISABLE TRIGGER ALL",
            "UPDATE audit_auditentry SET payload = '{}'",
            "DELETE FROM audit_auditentry",
            "TRUNCATE audit_auditentry",
            "DELETE FROM audit_auditchainhead",
            "DELETE FROM audit_auditcheckpoint",
            "UPDATE audit_auditcheckpointdelivery SET sink = ''",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                as_app.execute(statement)


def test_roles_that_would_defeat_the_point_are_refused(app_role) -> None:
    owner = connection.settings_dict["USER"]  # CI's role: a superuser that owns every table
    with pytest.raises(CommandError, match="superuser"):
        call_command("grant_application_role", owner)
    with pytest.raises(CommandError, match="no PostgreSQL role"):
        call_command("grant_application_role", "no_such_role_here")
    name, _ = app_role
    _as_owner(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(f"{name}_table")))
    _as_owner(
        sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(f"{name}_table"), sql.Identifier(name))
    )
    with pytest.raises(CommandError, match="owns"):
        call_command("grant_application_role", name)
