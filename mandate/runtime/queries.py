"""SQL of the service room (thread ownership and the demo APIs' records) and its migrations."""

MIGRATIONS = [
    # 1: who owns each thread; LangGraph's checkpoint tables hold the rest.
    """
    CREATE TABLE mandate.threads (
        thread_id uuid PRIMARY KEY,
        tenant text NOT NULL,
        owner_issuer text NOT NULL,
        owner_subject text NOT NULL,
        status text NOT NULL DEFAULT 'idle',
        metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX threads_owner ON mandate.threads (tenant, owner_issuer, owner_subject, updated_at DESC);
    """,
    # 2: what the demo resource servers did, keyed by idempotency key (one effect per key).
    """
    CREATE TABLE mandate.demo_effects (
        api text NOT NULL,
        idempotency_key text NOT NULL,
        id text NOT NULL,
        subject text NOT NULL,
        actor text NOT NULL,
        audience text NOT NULL,
        scopes text[] NOT NULL,
        body jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (api, idempotency_key)
    );
    """,
    # 3: the approval queue: one row per paused gated call, single-use, expiring.
    """
    CREATE TABLE mandate.approvals (
        id uuid PRIMARY KEY,
        thread_id uuid NOT NULL REFERENCES mandate.threads (thread_id) ON DELETE CASCADE,
        tenant text NOT NULL,
        tool_call_id text NOT NULL,
        tool text NOT NULL,
        args jsonb NOT NULL,
        args_hash text NOT NULL,
        policy text NOT NULL,
        agent text NOT NULL,
        requester_issuer text NOT NULL,
        requester_subject text NOT NULL,
        status text NOT NULL DEFAULT 'pending',
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        decided_by_issuer text,
        decided_by_subject text,
        decision text,
        decided_at timestamptz,
        UNIQUE (thread_id, tool_call_id)
    );
    CREATE INDEX approvals_pending ON mandate.approvals (tenant, status, expires_at);
    """,
    # 4: the decider's comment travels with the decision.
    "ALTER TABLE mandate.approvals ADD COLUMN comment text",
    # 5: runs, as the LangGraph server API lists them.
    """
    CREATE TABLE mandate.runs (
        run_id uuid PRIMARY KEY,
        thread_id uuid NOT NULL REFERENCES mandate.threads (thread_id) ON DELETE CASCADE,
        assistant_id text NOT NULL,
        status text NOT NULL DEFAULT 'pending',
        metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX runs_thread ON mandate.runs (thread_id, created_at DESC);
    """,
    # 6: a thread runs one graph (its checkpoints only make sense for that graph).
    "ALTER TABLE mandate.threads ADD COLUMN assistant_id text",
    # 7: the demo APIs keep the W3C traceparent of each call, as a real API's logs would.
    "ALTER TABLE mandate.demo_effects ADD COLUMN traceparent text",
    # 8: where a paused run's trace continues when the thread is resumed (one trace per run).
    "ALTER TABLE mandate.threads ADD COLUMN traceparent text",
    # 9: the call ledger replaces the approval queue: one row per (thread, call, args hash), the
    # gate's authority for decisions, step-up evidence, expiry and single execution.
    """
    CREATE TABLE mandate.tool_calls (
        id uuid PRIMARY KEY,
        thread_id uuid NOT NULL,  -- no foreign key: threads of `langgraph dev` live in its own store
        tool_call_id text NOT NULL,
        args_hash text NOT NULL,
        tenant text NOT NULL,
        tool text NOT NULL,
        args jsonb NOT NULL,
        policy text NOT NULL,
        agent text NOT NULL,
        requester_issuer text NOT NULL,
        requester_subject text NOT NULL,
        requester_user text NOT NULL,
        status text NOT NULL DEFAULT 'pending',
        needs_requester boolean NOT NULL DEFAULT false,
        edited_from text,
        edited_to text,
        reason text,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        asked_at timestamptz,
        decided_by_issuer text,
        decided_by_subject text,
        decided_by_user text,
        decided_at timestamptz,
        comment text,
        step_up_acr text,
        step_up_auth_time bigint,
        step_up_checked_at timestamptz,
        attempts int NOT NULL DEFAULT 0,
        executed_at timestamptz,
        outcome jsonb,
        UNIQUE (thread_id, tool_call_id, args_hash)
    );
    CREATE INDEX tool_calls_pending ON mandate.tool_calls (tenant, status, expires_at);
    DROP TABLE mandate.approvals;
    """,
    # 10: assistants: a graph plus a vetted configuration, owned by one tenant, versioned. The key is
    # (tenant, id) so that an id taken in one tenant reveals nothing to another. Threads and runs
    # remember the assistant they ran with (their `assistant_id` column has always held the graph id).
    """
    CREATE TABLE mandate.assistants (
        tenant text NOT NULL,
        assistant_id uuid NOT NULL,
        graph_id text NOT NULL,
        name text NOT NULL,
        description text,
        config jsonb NOT NULL DEFAULT '{}'::jsonb,
        context jsonb NOT NULL DEFAULT '{}'::jsonb,
        metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
        version int NOT NULL DEFAULT 1,
        created_by text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant, assistant_id)
    );
    CREATE TABLE mandate.assistant_versions (
        tenant text NOT NULL,
        assistant_id uuid NOT NULL,
        version int NOT NULL,
        graph_id text NOT NULL,
        name text NOT NULL,
        description text,
        config jsonb NOT NULL,
        context jsonb NOT NULL,
        metadata jsonb NOT NULL,
        created_by text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant, assistant_id, version),
        FOREIGN KEY (tenant, assistant_id) REFERENCES mandate.assistants (tenant, assistant_id) ON DELETE CASCADE
    );
    ALTER TABLE mandate.threads ADD COLUMN assistant_uuid uuid;
    ALTER TABLE mandate.runs ADD COLUMN assistant_uuid uuid;
    """,
    # 11: runs are a durable queue. A worker of any replica claims a pending run (FOR UPDATE SKIP
    # LOCKED, oldest first, one run per thread), holds a lease it renews, and releases it however the
    # run ends; a run whose lease expired is claimed again and continues from its last checkpoint.
    # Events are an ordered log per run, so any replica can stream, join or replay them. Runs and
    # busy threads of the single-process engine had no lease: they are marked error, once, here.
    """
    ALTER TABLE mandate.runs
        ADD COLUMN seq bigserial,
        ADD COLUMN queue text NOT NULL DEFAULT '',
        ADD COLUMN kwargs jsonb NOT NULL DEFAULT '{}'::jsonb,
        ADD COLUMN requester_issuer text,
        ADD COLUMN requester_subject text,
        ADD COLUMN temporary boolean NOT NULL DEFAULT false,
        ADD COLUMN multitask_strategy text NOT NULL DEFAULT 'reject',
        ADD COLUMN webhook text,
        ADD COLUMN lease_owner text,
        ADD COLUMN lease_expires_at timestamptz,
        ADD COLUMN attempt int NOT NULL DEFAULT 0,
        ADD COLUMN executed_by text[] NOT NULL DEFAULT '{}',
        ADD COLUMN cancel_action text,
        ADD COLUMN started_at timestamptz,
        ADD COLUMN ended_at timestamptz;
    CREATE INDEX runs_queue ON mandate.runs (queue, seq) WHERE status IN ('pending', 'running');
    CREATE TABLE mandate.run_events (
        run_id uuid NOT NULL,
        seq int NOT NULL,
        thread_id uuid NOT NULL,  -- no foreign key: a temporary thread goes before its waiters read `end`
        event text NOT NULL,
        data text NOT NULL,
        result text,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, seq)
    );
    CREATE INDEX run_events_age ON mandate.run_events (created_at);
    UPDATE mandate.runs SET status = 'error', updated_at = now() WHERE status IN ('pending', 'running');
    UPDATE mandate.threads SET status = 'error', updated_at = now() WHERE status = 'busy';
    """,
]

_THREAD_COLUMNS = "thread_id, tenant, status, metadata, created_at, updated_at, assistant_id"

INSERT_THREAD = f"""
INSERT INTO mandate.threads (thread_id, tenant, owner_issuer, owner_subject, metadata)
VALUES (%(thread_id)s, %(tenant)s, %(issuer)s, %(subject)s, %(metadata)s)
ON CONFLICT (thread_id) DO NOTHING
RETURNING {_THREAD_COLUMNS}
"""

COUNT_OWNED_THREADS = """
SELECT count(*) AS n FROM mandate.threads
WHERE tenant = %(tenant)s AND owner_issuer = %(issuer)s AND owner_subject = %(subject)s
"""

SELECT_OWNED_THREAD = f"""
SELECT {_THREAD_COLUMNS} FROM mandate.threads
WHERE thread_id = %(thread_id)s AND tenant = %(tenant)s AND owner_issuer = %(issuer)s AND owner_subject = %(subject)s
"""

SEARCH_OWNED_THREADS = f"""
SELECT {_THREAD_COLUMNS} FROM mandate.threads
WHERE tenant = %(tenant)s AND owner_issuer = %(issuer)s AND owner_subject = %(subject)s
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND metadata @> %(metadata)s
ORDER BY updated_at DESC, thread_id
LIMIT %(limit)s OFFSET %(offset)s
"""



DELETE_THREAD = """
WITH calls AS (DELETE FROM mandate.tool_calls WHERE thread_id = %(thread_id)s)
DELETE FROM mandate.threads WHERE thread_id = %(thread_id)s
"""

INSERT_EFFECT = """
INSERT INTO mandate.demo_effects (api, idempotency_key, id, subject, actor, audience, scopes, body, traceparent)
VALUES (%(api)s, %(key)s, %(id)s, %(subject)s, %(actor)s, %(audience)s, %(scopes)s, %(body)s, %(traceparent)s)
ON CONFLICT (api, idempotency_key) DO NOTHING
"""

SELECT_EFFECT = """
SELECT id, subject, actor, audience, scopes, body, created_at FROM mandate.demo_effects
WHERE api = %(api)s AND idempotency_key = %(key)s
"""

LIST_EFFECTS = """
SELECT id, subject, actor, audience, scopes, body, created_at FROM mandate.demo_effects
WHERE api = %(api)s AND subject = %(subject)s ORDER BY created_at
"""


_CALL_COLUMNS = """id, thread_id, tool_call_id, args_hash, tenant, tool, args, policy, agent, requester_issuer,
    requester_subject, requester_user, status, needs_requester, edited_from, edited_to, reason,
    extract(epoch FROM created_at)::float8 AS created_at, extract(epoch FROM expires_at)::float8 AS expires_at,
    extract(epoch FROM asked_at)::float8 AS asked_at,
    decided_by_issuer, decided_by_subject, decided_by_user, extract(epoch FROM decided_at)::float8 AS decided_at,
    comment, step_up_acr, step_up_auth_time, extract(epoch FROM step_up_checked_at)::float8 AS step_up_checked_at,
    attempts, extract(epoch FROM executed_at)::float8 AS executed_at, outcome"""

OPEN_CALL = f"""
WITH opened AS (
    INSERT INTO mandate.tool_calls (id, thread_id, tool_call_id, args_hash, tenant, tool, args, policy, agent,
        requester_issuer, requester_subject, requester_user, needs_requester, edited_from, created_at, expires_at)
    VALUES (%(id)s, %(thread_id)s, %(tool_call_id)s, %(args_hash)s, %(tenant)s, %(tool)s, %(args)s, %(policy)s,
        %(agent)s, %(requester_issuer)s, %(requester_subject)s, %(requester_user)s, %(needs_requester)s,
        %(edited_from)s, to_timestamp(%(now)s), to_timestamp(%(now)s + %(ttl)s))
    ON CONFLICT (thread_id, tool_call_id, args_hash) DO NOTHING
    RETURNING {_CALL_COLUMNS}
)
SELECT * FROM opened
UNION ALL
SELECT {_CALL_COLUMNS} FROM mandate.tool_calls
WHERE thread_id = %(thread_id)s AND tool_call_id = %(tool_call_id)s AND args_hash = %(args_hash)s
"""

SELECT_CALL = f"""
SELECT {_CALL_COLUMNS} FROM mandate.tool_calls
WHERE thread_id = %(thread_id)s AND tool_call_id = %(tool_call_id)s AND args_hash = %(args_hash)s
"""

SELECT_CURRENT_CALL = f"""
SELECT {_CALL_COLUMNS} FROM mandate.tool_calls
WHERE thread_id = %(thread_id)s AND tool_call_id = %(tool_call_id)s AND status <> 'edited'
ORDER BY created_at DESC LIMIT 1
"""

SELECT_CALL_IN_TENANT = f"""
SELECT {_CALL_COLUMNS} FROM mandate.tool_calls
WHERE id = %(id)s AND tenant = %(tenant)s AND policy <> 'none' AND asked_at IS NOT NULL
"""

DECIDE_CALL = """
UPDATE mandate.tool_calls
SET status = %(status)s, decided_by_issuer = %(issuer)s, decided_by_subject = %(subject)s, decided_by_user = %(user)s,
    decided_at = to_timestamp(%(now)s), comment = %(comment)s, edited_to = %(edited_to)s
WHERE id = %(id)s AND status IN ('pending', 'deciding')
  AND (%(status)s = 'expired' OR expires_at > to_timestamp(%(now)s))
RETURNING id
"""

MARK_ASKED = "UPDATE mandate.tool_calls SET asked_at = to_timestamp(%(now)s) WHERE id = %(id)s AND asked_at IS NULL RETURNING id"

RECORD_STEP_UP = """
UPDATE mandate.tool_calls
SET step_up_acr = %(acr)s, step_up_auth_time = %(auth_time)s, step_up_checked_at = to_timestamp(%(checked_at)s)
WHERE id = %(id)s
"""

START_EXECUTION = """
UPDATE mandate.tool_calls SET attempts = attempts + 1
WHERE id = %(id)s AND executed_at IS NULL
RETURNING attempts
"""

FINISH_EXECUTION = """
UPDATE mandate.tool_calls SET executed_at = to_timestamp(%(now)s), outcome = %(outcome)s
WHERE id = %(id)s AND executed_at IS NULL
"""

EXPIRE_PENDING_CALLS = """
UPDATE mandate.tool_calls SET status = 'expired'
WHERE tenant = %(tenant)s AND status = 'pending' AND expires_at <= now()
"""

LIST_PENDING_REVIEWS = f"""
SELECT {_CALL_COLUMNS} FROM mandate.tool_calls
WHERE tenant = %(tenant)s AND status = 'pending' AND expires_at > now() AND policy <> 'none' AND asked_at IS NOT NULL
ORDER BY created_at
LIMIT %(limit)s
"""

CLAIM_REVIEW = """
UPDATE mandate.tool_calls SET status = 'deciding'
WHERE id = %(id)s AND status = 'pending' AND expires_at > now() AND asked_at IS NOT NULL
RETURNING id
"""

RELEASE_REVIEW = "UPDATE mandate.tool_calls SET status = 'pending' WHERE id = %(id)s AND status = 'deciding'"

CLOSE_OPEN_REVIEWS = """
UPDATE mandate.tool_calls SET status = 'closed'
WHERE thread_id = %(thread_id)s AND status IN ('pending', 'deciding') AND executed_at IS NULL
"""







UPDATE_THREAD_METADATA = """
UPDATE mandate.threads SET metadata = metadata || %(metadata)s, updated_at = now() WHERE thread_id = %(thread_id)s
"""

BIND_THREAD_ASSISTANT = """
UPDATE mandate.threads SET assistant_id = coalesce(assistant_id, %(assistant_id)s)
WHERE thread_id = %(thread_id)s
RETURNING assistant_id
"""


# Assistants (migration 10). The built-in graphs are system assistants: no rows, visible to every
# tenant; the listing queries add them from parameters so that filters, order and paging are SQL's.

_ASSISTANT_COLUMNS = "assistant_id, graph_id, name, description, config, context, metadata, version, created_at, updated_at"

_ALL_ASSISTANTS = f"""
WITH listed AS (
    SELECT {_ASSISTANT_COLUMNS}, false AS system FROM mandate.assistants
    WHERE tenant = %(tenant)s AND graph_id = ANY(%(graphs)s)
    UNION ALL
    SELECT s.assistant_id, s.graph_id, s.graph_id, s.description, jsonb_build_object(), jsonb_build_object(),
        jsonb_build_object('created_by', 'system'), 1, %(system_created_at)s, %(system_created_at)s, true
    FROM unnest(%(system_ids)s::uuid[], %(system_graphs)s::text[], %(system_descriptions)s::text[])
        AS s(assistant_id, graph_id, description)
)
SELECT * FROM listed
WHERE (%(graph_id)s::text IS NULL OR graph_id = %(graph_id)s)
  AND (%(name)s::text IS NULL OR strpos(lower(name), lower(%(name)s)) > 0)
  AND metadata @> %(metadata)s
"""

SEARCH_ASSISTANTS = _ALL_ASSISTANTS + """
ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s
"""
"""``{order}`` is composed with ``psycopg.sql`` from an allow-list of columns, never from client text."""

COUNT_ASSISTANTS = f"SELECT count(*) AS n FROM ({_ALL_ASSISTANTS}) AS matching"

COUNT_TENANT_ASSISTANTS = "SELECT count(*) AS n FROM mandate.assistants WHERE tenant = %(tenant)s"

SELECT_ASSISTANT = f"""
SELECT {_ASSISTANT_COLUMNS}, false AS system FROM mandate.assistants
WHERE tenant = %(tenant)s AND assistant_id = %(assistant_id)s
"""

INSERT_ASSISTANT = f"""
WITH created AS (
    INSERT INTO mandate.assistants (tenant, assistant_id, graph_id, name, description, config, context, metadata, created_by)
    VALUES (%(tenant)s, %(assistant_id)s, %(graph_id)s, %(name)s, %(description)s, %(config)s, %(context)s,
        %(metadata)s, %(created_by)s)
    ON CONFLICT (tenant, assistant_id) DO NOTHING
    RETURNING {_ASSISTANT_COLUMNS}, false AS system
), first_version AS (
    INSERT INTO mandate.assistant_versions (tenant, assistant_id, version, graph_id, name, description, config,
        context, metadata, created_by, created_at)
    SELECT %(tenant)s, assistant_id, 1, graph_id, name, description, config, context, metadata, %(created_by)s, created_at
    FROM created
)
SELECT * FROM created
"""

LOCK_ASSISTANT = f"""
SELECT {_ASSISTANT_COLUMNS}, false AS system,
    (SELECT coalesce(max(version), 0) FROM mandate.assistant_versions v
     WHERE v.tenant = a.tenant AND v.assistant_id = a.assistant_id) AS latest_version,
    (SELECT count(*) FROM mandate.assistant_versions v
     WHERE v.tenant = a.tenant AND v.assistant_id = a.assistant_id) AS versions
FROM mandate.assistants a
WHERE tenant = %(tenant)s AND assistant_id = %(assistant_id)s
FOR UPDATE
"""

INSERT_ASSISTANT_VERSION = """
INSERT INTO mandate.assistant_versions (tenant, assistant_id, version, graph_id, name, description, config, context,
    metadata, created_by)
VALUES (%(tenant)s, %(assistant_id)s, %(version)s, %(graph_id)s, %(name)s, %(description)s, %(config)s, %(context)s,
    %(metadata)s, %(created_by)s)
"""

SET_ASSISTANT_VERSION = """
UPDATE mandate.assistants a
SET graph_id = v.graph_id, name = v.name, description = v.description, config = v.config, context = v.context,
    metadata = v.metadata, version = v.version, updated_at = now()
FROM mandate.assistant_versions v
WHERE a.tenant = %(tenant)s AND a.assistant_id = %(assistant_id)s
  AND v.tenant = a.tenant AND v.assistant_id = a.assistant_id AND v.version = %(version)s
RETURNING a.assistant_id, a.graph_id, a.name, a.description, a.config, a.context, a.metadata, a.version,
    a.created_at, a.updated_at, false AS system
"""

LIST_ASSISTANT_VERSIONS = """
SELECT assistant_id, version, graph_id, name, description, config, context, metadata, created_at, created_at AS updated_at,
    false AS system
FROM mandate.assistant_versions
WHERE tenant = %(tenant)s AND assistant_id = %(assistant_id)s AND metadata @> %(metadata)s
ORDER BY version DESC LIMIT %(limit)s OFFSET %(offset)s
"""

DELETE_ASSISTANT = """
DELETE FROM mandate.assistants WHERE tenant = %(tenant)s AND assistant_id = %(assistant_id)s RETURNING assistant_id
"""

# Threads and runs remember their assistant; the thread search grows filters and an order.

SET_THREAD_ASSISTANT = """
UPDATE mandate.threads SET assistant_uuid = %(assistant_uuid)s WHERE thread_id = %(thread_id)s
RETURNING assistant_id, assistant_uuid
"""

SELECT_THREAD_ASSISTANT = "SELECT tenant, assistant_id, assistant_uuid FROM mandate.threads WHERE thread_id = %(thread_id)s"
SELECT_THREAD_METADATA = "SELECT metadata FROM mandate.threads WHERE thread_id = %(thread_id)s"




DELETE_RUN = "DELETE FROM mandate.runs WHERE run_id = %(run_id)s AND thread_id = %(thread_id)s"


_OWNED_THREADS_MATCHING = f"""
SELECT {_THREAD_COLUMNS} FROM mandate.threads
WHERE tenant = %(tenant)s AND owner_issuer = %(issuer)s AND owner_subject = %(subject)s
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(ids)s::uuid[] IS NULL OR thread_id = ANY(%(ids)s))
  AND metadata @> %(metadata)s
"""

SEARCH_OWNED_THREADS_SORTED = _OWNED_THREADS_MATCHING + """
ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s
"""
"""``{order}`` is composed with ``psycopg.sql`` from an allow-list of columns, never from client text."""

COUNT_OWNED_THREADS_MATCHING = f"SELECT count(*) AS n FROM ({_OWNED_THREADS_MATCHING}) AS matching"

SET_CALL_REASON = """
UPDATE mandate.tool_calls SET reason = %(reason)s
WHERE id = %(id)s AND status = 'pending'
RETURNING id
"""

# The run queue and its event log (migration 11). A run is a row; its thread row is the per-thread
# lock: a claim locks both (SKIP LOCKED) and marks the thread busy in the same statement, so two
# workers never run one thread, and a thread's runs start in the order they were created.

RUN_NOTIFY_CHANNEL = "mandate_runs"
"""LISTEN/NOTIFY channel: ``queued``, ``event <run_id>``, ``cancel <run_id>``."""

_RUN_COLUMNS = """run_id, thread_id, assistant_id, assistant_uuid, status, metadata, kwargs, multitask_strategy,
    temporary, webhook, requester_issuer, requester_subject, attempt, cancel_action, executed_by, created_at, updated_at"""

_RUN_COLUMNS_OF_R = ", ".join(f"r.{column.strip()}" for column in _RUN_COLUMNS.split(","))

LOCK_THREAD_FOR_RUN = "SELECT thread_id FROM mandate.threads WHERE thread_id = %(thread_id)s FOR UPDATE"

ACTIVE_RUNS_OF_THREAD = """
SELECT run_id, status FROM mandate.runs
WHERE thread_id = %(thread_id)s AND status IN ('pending', 'running') ORDER BY seq
"""

INSERT_QUEUED_RUN = f"""
INSERT INTO mandate.runs (run_id, thread_id, assistant_id, assistant_uuid, metadata, kwargs, requester_issuer,
    requester_subject, temporary, multitask_strategy, webhook, queue)
VALUES (%(run_id)s, %(thread_id)s, %(assistant_id)s, %(assistant_uuid)s, %(metadata)s, %(kwargs)s, %(issuer)s,
    %(subject)s, %(temporary)s, %(multitask_strategy)s, %(webhook)s, %(queue)s)
RETURNING {_RUN_COLUMNS}
"""

NOTIFY_RUNS = "SELECT pg_notify('mandate_runs', %(payload)s)"

CLAIM_RUN = f"""
WITH candidate AS (
    SELECT r.run_id, r.thread_id FROM mandate.runs r JOIN mandate.threads t ON t.thread_id = r.thread_id
    WHERE r.queue = %(queue)s AND r.status IN ('pending', 'running')
      AND ((r.status = 'pending' AND t.status <> 'busy'
            AND NOT EXISTS (SELECT 1 FROM mandate.runs p
                            WHERE p.thread_id = r.thread_id AND p.status = 'pending' AND p.seq < r.seq))
        OR (r.status = 'running' AND r.lease_expires_at < now()))
    ORDER BY r.seq
    LIMIT 1
    FOR UPDATE OF r, t SKIP LOCKED
), busy AS (
    UPDATE mandate.threads t SET status = 'busy', updated_at = now()
    FROM candidate c WHERE t.thread_id = c.thread_id
    RETURNING t.thread_id, t.traceparent
)
UPDATE mandate.runs r
SET status = 'running', lease_owner = %(owner)s, lease_expires_at = now() + make_interval(secs => %(lease)s),
    attempt = r.attempt + 1, executed_by = r.executed_by || %(owner)s::text,
    started_at = coalesce(r.started_at, now()), updated_at = now()
FROM candidate c, busy b
WHERE r.run_id = c.run_id
RETURNING {_RUN_COLUMNS_OF_R}, b.traceparent
"""
"""The oldest runnable run: pending on a thread that is free (and first in its thread's line), or
running under a lease that expired (its replica died). Locks run and thread; marks the thread busy."""

RENEW_LEASES = """
UPDATE mandate.runs SET lease_expires_at = now() + make_interval(secs => %(lease)s)
WHERE run_id = ANY(%(run_ids)s) AND lease_owner = %(owner)s AND status = 'running'
RETURNING run_id, cancel_action
"""

LEASE_HELD = """
SELECT extract(epoch FROM lease_expires_at - now())::float8 AS remaining FROM mandate.runs
WHERE run_id = %(run_id)s AND lease_owner = %(owner)s AND status = 'running' AND lease_expires_at > now()
"""
"""The seconds left of the owner's lease on a running run; no row when it does not hold one."""

FINISH_RUN = """
UPDATE mandate.runs
SET status = %(status)s, lease_owner = NULL, lease_expires_at = NULL, ended_at = now(), updated_at = now()
WHERE run_id = %(run_id)s AND lease_owner = %(owner)s AND status = 'running'
RETURNING thread_id
"""

DELETE_LEASED_RUN = """
DELETE FROM mandate.runs WHERE run_id = %(run_id)s AND lease_owner = %(owner)s AND status = 'running'
RETURNING thread_id
"""

RELEASE_THREAD = """
UPDATE mandate.threads SET status = %(status)s, traceparent = %(traceparent)s, updated_at = now()
WHERE thread_id = %(thread_id)s
"""

HAND_BACK_RUNS = """
UPDATE mandate.runs SET lease_owner = NULL, lease_expires_at = '-infinity', updated_at = now()
WHERE run_id = ANY(%(run_ids)s) AND lease_owner = %(owner)s AND status = 'running'
"""
"""Runs a draining replica could not finish in time: any other worker claims them at once."""

REQUEST_CANCEL = """
UPDATE mandate.runs SET cancel_action = coalesce(cancel_action, %(action)s), updated_at = now()
WHERE thread_id = %(thread_id)s AND run_id = ANY(%(run_ids)s) AND status IN ('pending', 'running')
RETURNING run_id, status
"""

CANCEL_PENDING_RUN = """
UPDATE mandate.runs SET status = 'interrupted', ended_at = now(), updated_at = now()
WHERE run_id = %(run_id)s AND status = 'pending'
RETURNING run_id
"""

DELETE_PENDING_RUN = "DELETE FROM mandate.runs WHERE run_id = %(run_id)s AND status = 'pending' RETURNING run_id"

SELECT_QUEUED_RUN = f"SELECT {_RUN_COLUMNS} FROM mandate.runs WHERE run_id = %(run_id)s AND thread_id = %(thread_id)s"

LIST_THREAD_RUNS = f"""
SELECT {_RUN_COLUMNS} FROM mandate.runs
WHERE thread_id = %(thread_id)s AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY created_at DESC, seq DESC LIMIT %(limit)s OFFSET %(offset)s
"""

LIST_OWNED_ACTIVE_RUNS = """
SELECT r.run_id, r.thread_id FROM mandate.runs r JOIN mandate.threads t ON t.thread_id = r.thread_id
WHERE t.tenant = %(tenant)s AND t.owner_issuer = %(issuer)s AND t.owner_subject = %(subject)s
  AND r.status = ANY(%(statuses)s)
  AND (%(thread_id)s::uuid IS NULL OR r.thread_id = %(thread_id)s)
  AND (%(run_ids)s::uuid[] IS NULL OR r.run_id = ANY(%(run_ids)s))
"""

APPEND_RUN_EVENT = """
WITH appended AS (
    INSERT INTO mandate.run_events (run_id, seq, thread_id, event, data, result)
    SELECT %(run_id)s, coalesce(max(seq), 0) + 1, %(thread_id)s, %(event)s, %(data)s, %(result)s
    FROM mandate.run_events WHERE run_id = %(run_id)s
    HAVING %(owner)s::text IS NULL
        OR EXISTS (SELECT 1 FROM mandate.runs WHERE run_id = %(run_id)s AND lease_owner = %(owner)s)
    RETURNING seq
)
SELECT seq, pg_notify('mandate_runs', 'event ' || %(run_id)s::text) FROM appended
"""
"""Append one event as the next of its run's log; with an ``owner``, only while it holds the run's lease."""

TAIL_RUN_EVENTS = """
SELECT seq, event, data, result FROM mandate.run_events
WHERE run_id = %(run_id)s AND thread_id = %(thread_id)s AND seq > %(after)s
ORDER BY seq LIMIT 500
"""

PURGE_RUN_EVENTS = "DELETE FROM mandate.run_events WHERE created_at < now() - make_interval(secs => %(age)s)"

DELETE_RUN_TOKEN = """
DELETE FROM mandate.token_vault WHERE issuer = %(issuer)s AND subject = %(subject)s AND thread_id = %(thread_id)s
"""
"""The vault (auth room) has no delete; the sessions and audit rooms delete their entries the same way."""

DELETE_RUN_CHECKPOINTS = """
WITH doomed AS (
    SELECT checkpoint_ns, checkpoint_id FROM checkpoints
    WHERE thread_id = %(thread_id)s AND metadata ->> 'run_id' = %(run_id)s
), writes AS (
    DELETE FROM checkpoint_writes w USING doomed d
    WHERE w.thread_id = %(thread_id)s AND w.checkpoint_ns = d.checkpoint_ns AND w.checkpoint_id = d.checkpoint_id
)
DELETE FROM checkpoints c USING doomed d
WHERE c.thread_id = %(thread_id)s AND c.checkpoint_ns = d.checkpoint_ns AND c.checkpoint_id = d.checkpoint_id
"""
"""A rolled-back run's checkpoints and their writes: the thread is as it was before the run."""
