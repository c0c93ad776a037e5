"""`manage.py grant_application_role ROLE`: grants for a PostgreSQL role that runs the app, owning nothing.

Run by the owning role (the one that runs migrations) after every `migrate`. A table owner can
disable the audit log's append-only triggers; a role that owns no table cannot, and without UPDATE
or DELETE on the log it cannot even try what the triggers refuse. docs/operations.md says when.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from psycopg import sql

# The audit log is append-only; its chain head only moves forward (never deleted). Signed checkpoints
# waiting for their sinks are never removed either (UPDATE stays: the anchor run locks them with
# SELECT ... FOR UPDATE while it delivers), and a delivery, once recorded, stands.
APPEND_ONLY = {
    "audit_auditentry": ("UPDATE", "DELETE", "TRUNCATE"),
    "audit_auditchainhead": ("DELETE", "TRUNCATE"),
    "audit_auditcheckpoint": ("DELETE", "TRUNCATE"),
    "audit_auditcheckpointdelivery": ("UPDATE", "DELETE", "TRUNCATE"),
}


class Command(BaseCommand):
    help = "Grant a non-owner PostgreSQL role what the application needs, and no more on the audit log."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", help="An existing PostgreSQL role (LOGIN) that owns none of the tables.")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("grant_application_role is for PostgreSQL (DATABASE_URL=postgres://...).")
        role = sql.Identifier(options["role"])
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [options["role"]])
            found = cursor.fetchone()
            if found is None:
                raise CommandError(f"no PostgreSQL role named {options['role']!r}: create it first.")
            if found[0]:
                raise CommandError(f"{options['role']} is a superuser: no grant or trigger binds it.")
            cursor.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tableowner = %s",
                [options["role"]],
            )
            owned = [row[0] for row in cursor.fetchall()]
            if owned:
                raise CommandError(
                    f"{options['role']} owns {', '.join(sorted(owned))}: an owner can disable the audit "
                    "triggers. Run migrations as another role and give this one only the grants."
                )
            cursor.execute("SELECT current_schema()")
            schema = sql.Identifier(cursor.fetchone()[0])
            statements = [
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role),
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(
                    schema, role
                ),
                sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(schema, role),
                *(
                    sql.SQL("REVOKE {} ON {} FROM {}").format(
                        sql.SQL(", ").join(map(sql.SQL, privileges)), sql.Identifier(table), role
                    )
                    for table, privileges in APPEND_ONLY.items()
                ),
            ]
            for statement in statements:
                cursor.execute(statement.as_string(cursor.connection))
        self.stdout.write(
            f"granted {options['role']} the application's privileges, none to change or delete audit "
            "entries; run this again after every migrate"
        )
