"""On PostgreSQL, make the audit table append-only for every role, the owner included.

A row-level BEFORE UPDATE OR DELETE trigger raises, so neither the ORM nor raw
SQL from the application can rewrite history; the chain head may only move
forward. (Disabling the trigger needs ALTER TABLE, i.e. the table owner, which
the tamper tests do on purpose.) Other databases rely on the model and
queryset guards and on `verify_audit`.
"""

from django.db import migrations

from tenancy.migration_ops import postgresql_sql

FORWARD = """
CREATE OR REPLACE FUNCTION audit_reject_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit log is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_entry_append_only
    BEFORE UPDATE OR DELETE ON audit_auditentry
    FOR EACH ROW EXECUTE FUNCTION audit_reject_change();

CREATE OR REPLACE FUNCTION audit_head_forward_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.last_seq <= OLD.last_seq OR NEW.tenant_id <> OLD.tenant_id THEN
        RAISE EXCEPTION 'audit chain head may only move forward'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_chain_head_forward_only
    BEFORE UPDATE OR DELETE ON audit_auditchainhead
    FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS audit_chain_head_forward_only ON audit_auditchainhead;
DROP FUNCTION IF EXISTS audit_head_forward_only();
DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_auditentry;
DROP FUNCTION IF EXISTS audit_reject_change();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [postgresql_sql(FORWARD, BACKWARD)]
