"""On PostgreSQL, consent and retention evidence is write-once for every role.

A BEFORE UPDATE OR DELETE trigger rejects changes to retention schedules,
consent templates, links, records and revocations: a legal reviewer can rely on
a record being exactly what was signed. Other databases rely on the model guard
(consent.models.WriteOnceModel).
"""

from django.db import migrations

from tenancy.migration_ops import postgresql_sql

TABLES = (
    "consent_retentionschedule",
    "consent_consenttemplate",
    "consent_consentlink",
    "consent_consentrecord",
    "consent_consentrevocation",
)

FORWARD = """
CREATE OR REPLACE FUNCTION consent_reject_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'consent evidence is write-once: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
""" + "".join(
    f"""
CREATE TRIGGER {table}_write_once
    BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION consent_reject_change();
"""
    for table in TABLES
)

BACKWARD = "".join(f"DROP TRIGGER IF EXISTS {table}_write_once ON {table};\n" for table in TABLES) + (
    "DROP FUNCTION IF EXISTS consent_reject_change();\n"
)


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_initial")]

    operations = [postgresql_sql(FORWARD, BACKWARD)]
