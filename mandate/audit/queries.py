"""SQL of the audit room and its numbered migrations.

The chain link of a record is computed by ``mandate.audit_append`` inside the writing
transaction, under a per-tenant advisory lock; ``audit/_chain.py`` recomputes it independently
in Python when verifying. The two must stay byte-for-byte identical (format ``mandate.audit.v1``).
"""

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
    # 2: a hash chain per tenant, signed checkpoints, the pseudonym directory, and deletes only of
    #    records a purge covers. Records older than this are chained in time order but were never
    #    sealed: until the chain reaches the next multiple of the checkpoint interval, verify
    #    reports the last due checkpoint missing (dev databases of the walking skeleton only).
    r"""
    ALTER TABLE mandate.audit_records
        ADD COLUMN seq bigint,
        ADD COLUMN prev_hash bytea,
        ADD COLUMN hash bytea,
        ADD COLUMN trace_id text,
        ADD COLUMN span_id text;

    CREATE FUNCTION mandate.audit_field(value text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
        SELECT CASE WHEN value IS NULL THEN convert_to('-', 'UTF8')
               ELSE convert_to(length(convert_to(value, 'UTF8'))::text || ':', 'UTF8') || convert_to(value, 'UTF8')
               END
    $$;

    CREATE FUNCTION mandate.audit_record_hash(r mandate.audit_records) RETURNS bytea LANGUAGE sql STABLE AS $$
        SELECT sha256(
            r.prev_hash
            || mandate.audit_field('mandate.audit.v1')
            || mandate.audit_field(r.tenant)
            || mandate.audit_field(r.seq::text)
            || mandate.audit_field(r.id::text)
            || mandate.audit_field(to_char(r.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
            || mandate.audit_field(r.thread_id)
            || mandate.audit_field(r.event)
            || mandate.audit_field(r.actor)
            || mandate.audit_field(r.agent)
            || mandate.audit_field(r.tool)
            || mandate.audit_field(r.tool_call_id)
            || mandate.audit_field(r.decision)
            || mandate.audit_field(r.detail::text)
            || mandate.audit_field(r.trace_id)
            || mandate.audit_field(r.span_id)
        )
    $$;

    ALTER TABLE mandate.audit_records DISABLE TRIGGER audit_records_append_only;
    DO $$
    DECLARE
        r mandate.audit_records;
        current_tenant text;
        next_seq bigint;
        prev bytea;
    BEGIN
        FOR r IN SELECT * FROM mandate.audit_records ORDER BY tenant, recorded_at, id LOOP
            IF current_tenant IS DISTINCT FROM r.tenant THEN
                current_tenant := r.tenant;
                next_seq := 1;
                prev := decode(repeat('00', 32), 'hex');
            END IF;
            r.seq := next_seq;
            r.prev_hash := prev;
            r.hash := mandate.audit_record_hash(r);
            UPDATE mandate.audit_records SET seq = r.seq, prev_hash = r.prev_hash, hash = r.hash WHERE id = r.id;
            next_seq := next_seq + 1;
            prev := r.hash;
        END LOOP;
    END $$;
    ALTER TABLE mandate.audit_records ENABLE TRIGGER audit_records_append_only;

    ALTER TABLE mandate.audit_records
        ALTER COLUMN seq SET NOT NULL,
        ALTER COLUMN prev_hash SET NOT NULL,
        ALTER COLUMN hash SET NOT NULL;
    CREATE UNIQUE INDEX audit_records_chain ON mandate.audit_records (tenant, seq);
    CREATE INDEX audit_records_time ON mandate.audit_records (tenant, recorded_at);
    CREATE INDEX audit_records_actor ON mandate.audit_records (tenant, actor, seq);
    CREATE INDEX audit_records_purges ON mandate.audit_records (tenant, ((detail->>'through_seq')::bigint))
        WHERE event = 'audit.purged';

    -- p_unless_due > 0: append nothing (return nulls) if the new record's position is a multiple of
    -- it, i.e. a checkpoint is due; the caller then appends and seals in one explicit transaction.
    CREATE FUNCTION mandate.audit_append(
        p_id uuid, p_tenant text, p_thread_id text, p_event text, p_actor text, p_agent text, p_tool text,
        p_tool_call_id text, p_decision text, p_detail jsonb, p_trace_id text, p_span_id text, p_unless_due int
    ) RETURNS mandate.audit_records LANGUAGE plpgsql AS $$
    DECLARE
        r mandate.audit_records;
        head record;
    BEGIN
        -- One chain per tenant: writers of a tenant queue here until the holder commits.
        PERFORM pg_advisory_xact_lock(hashtextextended('mandate.audit_records:' || p_tenant, 0));
        SELECT a.seq, a.hash INTO head FROM mandate.audit_records a
        WHERE a.tenant = p_tenant ORDER BY a.seq DESC LIMIT 1;
        IF p_unless_due > 0 AND (coalesce(head.seq, 0) + 1) % p_unless_due = 0 THEN
            RETURN NULL;
        END IF;
        r.id := p_id;
        r.recorded_at := clock_timestamp();
        r.tenant := p_tenant;
        r.thread_id := p_thread_id;
        r.event := p_event;
        r.actor := p_actor;
        r.agent := p_agent;
        r.tool := p_tool;
        r.tool_call_id := p_tool_call_id;
        r.decision := p_decision;
        r.detail := coalesce(p_detail, '{}'::jsonb);
        r.seq := coalesce(head.seq, 0) + 1;
        r.prev_hash := coalesce(head.hash, decode(repeat('00', 32), 'hex'));
        r.trace_id := p_trace_id;
        r.span_id := p_span_id;
        r.hash := mandate.audit_record_hash(r);
        INSERT INTO mandate.audit_records VALUES (r.*);
        RETURN r;
    END $$;

    CREATE OR REPLACE FUNCTION mandate.audit_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- A retention purge first appends an `audit.purged` record naming the last seq it removes;
        -- only records such a record covers may be deleted. Nothing may ever be updated.
        IF TG_OP = 'DELETE' THEN
            IF EXISTS (
                SELECT 1 FROM mandate.audit_records p
                WHERE p.tenant = OLD.tenant AND p.event = 'audit.purged'
                  AND (p.detail->>'through_seq')::bigint >= OLD.seq
            ) THEN
                RETURN OLD;
            END IF;
        END IF;
        RAISE EXCEPTION 'mandate.audit_records is append-only';
    END $$;
    CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON mandate.audit_records
        FOR EACH STATEMENT EXECUTE FUNCTION mandate.audit_records_append_only();

    CREATE TABLE mandate.audit_checkpoints (
        tenant text NOT NULL,
        seq bigint NOT NULL,
        hash bytea NOT NULL,
        signed_at timestamptz NOT NULL,
        key_id text NOT NULL,
        signature bytea NOT NULL,
        PRIMARY KEY (tenant, seq)
    );
    CREATE FUNCTION mandate.audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'mandate.audit_checkpoints is append-only';
    END $$;
    CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON mandate.audit_checkpoints
        FOR EACH ROW EXECUTE FUNCTION mandate.audit_checkpoints_append_only();
    CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON mandate.audit_checkpoints
        FOR EACH STATEMENT EXECUTE FUNCTION mandate.audit_checkpoints_append_only();

    CREATE TABLE mandate.audit_subjects (
        pseudonym text PRIMARY KEY,
        issuer text NOT NULL,
        subject text NOT NULL,
        first_seen timestamptz NOT NULL DEFAULT now()
    );
    """,
]

# --- writing -------------------------------------------------------------------------------

APPEND_RECORD = """
WITH remembered AS (
    INSERT INTO mandate.audit_subjects (pseudonym, issuer, subject)
    SELECT %(actor)s, %(actor_issuer)s, %(actor_subject)s WHERE %(actor_issuer)s::text IS NOT NULL
    ON CONFLICT (pseudonym) DO NOTHING
)
SELECT seq, hash FROM mandate.audit_append(
    %(id)s, %(tenant)s, %(thread_id)s, %(event)s, %(actor)s, %(agent)s, %(tool)s, %(tool_call_id)s,
    %(decision)s, %(detail)s, %(trace_id)s, %(span_id)s, %(unless_due)s)
"""
"""Append one record (and the actor's directory entry, if known); see ``mandate.audit_append``."""

INSERT_CHECKPOINT = """
INSERT INTO mandate.audit_checkpoints (tenant, seq, hash, signed_at, key_id, signature)
VALUES (%(tenant)s, %(seq)s, %(hash)s, %(signed_at)s, %(key_id)s, %(signature)s)
ON CONFLICT (tenant, seq) DO NOTHING
"""

# --- reading -------------------------------------------------------------------------------

_RECORD_COLUMNS = """r.id, r.seq, r.recorded_at, r.tenant, r.thread_id, r.event, r.actor, r.agent, r.tool,
    r.tool_call_id, r.decision, r.detail, r.trace_id, r.span_id, r.prev_hash, r.hash"""

SEARCH_RECORDS = f"""
SELECT {_RECORD_COLUMNS}, s.issuer AS actor_issuer, s.subject AS actor_subject
FROM mandate.audit_records r LEFT JOIN mandate.audit_subjects s ON s.pseudonym = r.actor
WHERE r.tenant = %(tenant)s
  AND (%(thread_id)s::text IS NULL OR r.thread_id = %(thread_id)s)
  AND (%(actor)s::text IS NULL OR r.actor = %(actor)s)
  AND (%(agent)s::text IS NULL OR r.agent = %(agent)s)
  AND (%(tool)s::text IS NULL OR r.tool = %(tool)s)
  AND (%(event)s::text IS NULL OR r.event = %(event)s)
  AND (%(decision)s::text IS NULL OR r.decision = %(decision)s)
  AND (%(since)s::timestamptz IS NULL OR r.recorded_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR r.recorded_at < %(until)s)
  AND (%(before_seq)s::bigint IS NULL OR r.seq < %(before_seq)s)
ORDER BY r.seq DESC
LIMIT %(limit)s
"""

THREAD_TIMELINE = f"""
SELECT {_RECORD_COLUMNS}, s.issuer AS actor_issuer, s.subject AS actor_subject,
    (r.event = 'tool.started' AND NOT EXISTS (
        SELECT 1 FROM mandate.audit_records f
        WHERE f.tenant = r.tenant AND f.thread_id = r.thread_id AND f.tool_call_id = r.tool_call_id
          AND f.event IN ('tool.succeeded', 'tool.failed') AND f.seq > r.seq
    )) AS open
FROM mandate.audit_records r LEFT JOIN mandate.audit_subjects s ON s.pseudonym = r.actor
WHERE r.tenant = %(tenant)s AND r.thread_id = %(thread_id)s
ORDER BY r.seq
"""

OPEN_TOOL_CALLS = f"""
SELECT {_RECORD_COLUMNS}, s.issuer AS actor_issuer, s.subject AS actor_subject
FROM mandate.audit_records r LEFT JOIN mandate.audit_subjects s ON s.pseudonym = r.actor
WHERE r.tenant = %(tenant)s AND r.event = 'tool.started' AND r.recorded_at < %(started_before)s
  AND NOT EXISTS (
    SELECT 1 FROM mandate.audit_records f
    WHERE f.tenant = r.tenant AND f.thread_id = r.thread_id AND f.tool_call_id = r.tool_call_id
      AND f.event IN ('tool.succeeded', 'tool.failed') AND f.seq > r.seq
  )
ORDER BY r.seq
"""

EXPORT_RECORDS = f"""
SELECT {_RECORD_COLUMNS} FROM mandate.audit_records r
WHERE (%(tenant)s::text IS NULL OR r.tenant = %(tenant)s)
  AND (%(since)s::timestamptz IS NULL OR r.recorded_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR r.recorded_at < %(until)s)
ORDER BY r.tenant, r.seq
"""

CHAIN_RECORDS = f"""
SELECT {_RECORD_COLUMNS}, r.detail::text AS detail_text
FROM mandate.audit_records r WHERE r.tenant = %(tenant)s ORDER BY r.seq, r.id
"""

TENANTS = """
SELECT tenant FROM mandate.audit_records UNION SELECT tenant FROM mandate.audit_checkpoints ORDER BY tenant
"""

PURGE_ANCHORS = """
SELECT (detail->>'through_seq')::bigint AS through_seq, decode(detail->>'through_hash', 'hex') AS through_hash
FROM mandate.audit_records WHERE tenant = %(tenant)s AND event = 'audit.purged'
"""

CHECKPOINTS = """
SELECT tenant, seq, hash, signed_at, key_id, signature FROM mandate.audit_checkpoints
WHERE tenant = %(tenant)s ORDER BY seq
"""

# --- retention and erasure -----------------------------------------------------------------

LAST_RECORD_BEFORE = """
SELECT seq, hash FROM mandate.audit_records
WHERE tenant = %(tenant)s AND recorded_at < %(before)s ORDER BY seq DESC LIMIT 1
"""

DELETE_RECORDS_THROUGH = "DELETE FROM mandate.audit_records WHERE tenant = %(tenant)s AND seq <= %(through_seq)s"

SUBJECT_THREADS = """
SELECT thread_id::text AS thread_id, tenant FROM mandate.threads
WHERE owner_issuer = %(issuer)s AND owner_subject = %(subject)s
"""

DELETE_THREAD_CHECKPOINTS = (
    "DELETE FROM checkpoint_writes WHERE thread_id = ANY(%(thread_ids)s)",
    "DELETE FROM checkpoint_blobs WHERE thread_id = ANY(%(thread_ids)s)",
    "DELETE FROM checkpoints WHERE thread_id = ANY(%(thread_ids)s)",
)
"""LangGraph's checkpoint tables (schema public), keyed by thread id."""
DELETE_THREADS = "DELETE FROM mandate.threads WHERE thread_id::text = ANY(%(thread_ids)s)"

TABLES_PRESENT = """
SELECT to_regclass('mandate.threads') IS NOT NULL AS threads,
       to_regclass('checkpoints') IS NOT NULL AS checkpoints,
       to_regclass('mandate.token_vault') IS NOT NULL AS vault,
       to_regclass('mandate.tool_calls') IS NOT NULL AS tool_calls,
       to_regclass('mandate.run_events') IS NOT NULL AS run_events
"""
DELETE_RUN_EVENTS = "DELETE FROM mandate.run_events WHERE thread_id = ANY(%(thread_ids)s::uuid[])"
"""A run's stored events hold its messages and state; they have no foreign key (see the runtime's schema)."""
DELETE_TOOL_CALLS = "DELETE FROM mandate.tool_calls WHERE requester_issuer = %(issuer)s AND requester_subject = %(subject)s"
"""The call ledger keeps the arguments of a person's calls: they go with the person."""
DELETE_VAULT_ENTRIES = "DELETE FROM mandate.token_vault WHERE issuer = %(issuer)s AND subject = %(subject)s"

FORGET_SUBJECT = "DELETE FROM mandate.audit_subjects WHERE pseudonym = %(pseudonym)s"

SUBJECT_TENANTS = """
SELECT DISTINCT tenant FROM mandate.audit_records WHERE actor = %(pseudonym)s ORDER BY tenant
"""

SUBJECTS = """
SELECT pseudonym, issuer, subject FROM mandate.audit_subjects WHERE pseudonym = ANY(%(pseudonyms)s)
"""
