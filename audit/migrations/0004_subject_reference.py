"""Every entry about a subject names it in an indexed column (the ledger is a query, not a scan).

Existing entries get the column from their own content, the same derivation the chain walk
checks (audit.chain.subject_reference); their hashes do not change because the column is
derived, not hashed. The append-only trigger is lifted for this one statement by the table
owner that runs migrations, exactly as long as the backfill takes.
"""

from typing import Any

from django.conf import settings
from django.db import migrations, models

from audit.chain import subject_reference

BATCH = 2000


def backfill(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    entry_model = apps.get_model("audit", "AuditEntry")
    table = schema_editor.quote_name(entry_model._meta.db_table)
    postgresql = connection.vendor == "postgresql"
    rows = entry_model._base_manager.using(connection.alias).values_list(
        "pk", "target_type", "target_id", "payload"
    )
    pending: list[tuple[int, int]] = []
    with connection.cursor() as cursor:
        if postgresql:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER audit_entry_append_only")
        for pk, target_type, target_id, payload in rows.iterator(chunk_size=BATCH):
            subject = subject_reference(target_type, target_id, payload or {})
            if subject is not None:
                pending.append((subject, pk))
            if len(pending) >= BATCH:
                cursor.executemany(f"UPDATE {table} SET subject_ref = %s WHERE id = %s", pending)
                pending.clear()
        if pending:
            cursor.executemany(f"UPDATE {table} SET subject_ref = %s WHERE id = %s", pending)
        if postgresql:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER audit_entry_append_only")


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_checkpoints_outbox"),
        ("tenancy", "0003_api_tokens"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="auditentry",
            name="subject_ref",
            field=models.PositiveBigIntegerField(
                blank=True,
                help_text="The subject this entry is about (audit.chain.subject_reference); not a foreign key, "
                "so the entry outlives the subject's erasure.",
                null=True,
            ),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(fields=["tenant", "subject_ref", "seq"], name="auditentry_tenant_subject"),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=False),
    ]
