"""Migration operations shared by the apps' database-level guards."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def postgresql_sql(forward: str, backward: str) -> migrations.RunPython:
    """Raw SQL that runs on PostgreSQL only (triggers that make evidence tables write-once).

    Other databases have no such triggers and rely on the model guards. The SQL goes
    through the raw cursor with no parameters because plpgsql bodies contain '%'.
    """

    def run(sql: str) -> Any:
        def apply(apps: Any, schema_editor: Any) -> None:
            if schema_editor.connection.vendor == "postgresql":
                with schema_editor.connection.cursor() as cursor:
                    cursor.execute(sql)

        return apply

    return migrations.RunPython(run(forward), run(backward), elidable=False)


def drop_plaintext_authtoken_table(apps: Any, schema_editor: Any) -> None:
    """Remove DRF's authtoken table, left behind when rest_framework.authtoken left INSTALLED_APPS.

    Its keys are plain text, visible to every superuser in the admin and kept in
    every backup, so they are not carried over as hashes: clients of the previous
    scheme request a new token (docs/operations.md, "API tokens"). The app's
    migration records go too, so that adding the app back would create a fresh table.
    """
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if "authtoken_token" in connection.introspection.table_names(cursor):
            schema_editor.execute(f"DROP TABLE {schema_editor.quote_name('authtoken_token')}")
        cursor.execute("DELETE FROM django_migrations WHERE app = %s", ["authtoken"])
