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
