"""SQL of the audit room and its numbered migrations."""

MIGRATIONS = [
    # 1: the durable audit log; append-only is enforced by the database (issue: audit trail).
    """
    CREATE TABLE mandate.audit_records (
        id uuid PRIMARY KEY,
        recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        tenant text NOT NULL,
        thread_id text,
        event text NOT NULL,
        actor text NOT NULL,
        agent text,
        tool text,
        tool_call_id text,
        decision text,
        detail jsonb NOT NULL DEFAULT '{}'::jsonb
    );
    CREATE INDEX audit_records_thread ON mandate.audit_records (thread_id, recorded_at);
    CREATE FUNCTION mandate.audit_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'mandate.audit_records is append-only';
    END $$;
    CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON mandate.audit_records
        FOR EACH ROW EXECUTE FUNCTION mandate.audit_records_append_only();
    """,
]

INSERT_RECORD = """
INSERT INTO mandate.audit_records (id, tenant, thread_id, event, actor, agent, tool, tool_call_id, decision, detail)
VALUES (%(id)s, %(tenant)s, %(thread_id)s, %(event)s, %(actor)s, %(agent)s, %(tool)s, %(tool_call_id)s,
        %(decision)s, %(detail)s)
"""

SELECT_THREAD_RECORDS = """
SELECT id, recorded_at, tenant, thread_id, event, actor, agent, tool, tool_call_id, decision, detail
FROM mandate.audit_records WHERE thread_id = %(thread_id)s ORDER BY recorded_at, id
"""
