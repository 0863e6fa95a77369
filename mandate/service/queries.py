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
]

_THREAD_COLUMNS = "thread_id, tenant, status, metadata, created_at, updated_at, assistant_id"

INSERT_THREAD = f"""
INSERT INTO mandate.threads (thread_id, tenant, owner_issuer, owner_subject, metadata)
VALUES (%(thread_id)s, %(tenant)s, %(issuer)s, %(subject)s, %(metadata)s)
ON CONFLICT (thread_id) DO NOTHING
RETURNING {_THREAD_COLUMNS}
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

CLAIM_THREAD_FOR_RUN = """
UPDATE mandate.threads SET status = 'busy', updated_at = now()
WHERE thread_id = %(thread_id)s AND status <> 'busy'
RETURNING thread_id, traceparent
"""

SET_THREAD_STATUS = """
UPDATE mandate.threads SET status = %(status)s, traceparent = %(traceparent)s, updated_at = now()
WHERE thread_id = %(thread_id)s
"""

DELETE_THREAD = "DELETE FROM mandate.threads WHERE thread_id = %(thread_id)s"

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

RESET_BUSY_THREADS = "UPDATE mandate.threads SET status = 'error', updated_at = now() WHERE status = 'busy'"

_APPROVAL_COLUMNS = """id, thread_id, tenant, tool_call_id, tool, args, args_hash, policy, agent,
    requester_issuer, requester_subject, status, created_at, expires_at, decision, decided_at, comment"""

INSERT_APPROVAL = """
INSERT INTO mandate.approvals (id, thread_id, tenant, tool_call_id, tool, args, args_hash, policy, agent,
                               requester_issuer, requester_subject, expires_at)
VALUES (%(id)s, %(thread_id)s, %(tenant)s, %(tool_call_id)s, %(tool)s, %(args)s, %(args_hash)s, %(policy)s,
        %(agent)s, %(requester_issuer)s, %(requester_subject)s, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (thread_id, tool_call_id) DO NOTHING
"""

CLOSE_OTHER_PENDING_APPROVALS = """
UPDATE mandate.approvals SET status = 'closed'
WHERE thread_id = %(thread_id)s AND status = 'pending' AND tool_call_id <> ALL(%(keep)s)
"""

EXPIRE_APPROVALS = "UPDATE mandate.approvals SET status = 'expired' WHERE status = 'pending' AND expires_at <= now()"

LIST_PENDING_APPROVALS = f"""
SELECT {_APPROVAL_COLUMNS} FROM mandate.approvals
WHERE tenant = %(tenant)s AND status = 'pending' AND expires_at > now()
ORDER BY created_at
"""

SELECT_APPROVAL_IN_TENANT = f"SELECT {_APPROVAL_COLUMNS} FROM mandate.approvals WHERE id = %(id)s AND tenant = %(tenant)s"

CLAIM_APPROVAL = """
UPDATE mandate.approvals
SET status = 'deciding', decided_by_issuer = %(issuer)s, decided_by_subject = %(subject)s, decision = %(decision)s,
    comment = %(comment)s
WHERE id = %(id)s AND status = 'pending' AND expires_at > now()
RETURNING id
"""

FINISH_APPROVAL = """
UPDATE mandate.approvals SET status = %(status)s, decided_at = CASE WHEN %(status)s = 'pending' THEN NULL ELSE now() END
WHERE id = %(id)s
"""

_RUN_COLUMNS = "run_id, thread_id, assistant_id, status, metadata, created_at, updated_at"

INSERT_RUN = f"""
INSERT INTO mandate.runs (run_id, thread_id, assistant_id, metadata)
VALUES (%(run_id)s, %(thread_id)s, %(assistant_id)s, %(metadata)s)
RETURNING {_RUN_COLUMNS}
"""

SET_RUN_STATUS = "UPDATE mandate.runs SET status = %(status)s, updated_at = now() WHERE run_id = %(run_id)s"

SELECT_RUN = f"SELECT {_RUN_COLUMNS} FROM mandate.runs WHERE run_id = %(run_id)s AND thread_id = %(thread_id)s"

LIST_RUNS = f"""
SELECT {_RUN_COLUMNS} FROM mandate.runs WHERE thread_id = %(thread_id)s
ORDER BY created_at DESC LIMIT %(limit)s OFFSET %(offset)s
"""

RESET_RUNNING_RUNS = "UPDATE mandate.runs SET status = 'error', updated_at = now() WHERE status IN ('pending', 'running')"

UPDATE_THREAD_METADATA = """
UPDATE mandate.threads SET metadata = metadata || %(metadata)s, updated_at = now() WHERE thread_id = %(thread_id)s
"""

BIND_THREAD_ASSISTANT = """
UPDATE mandate.threads SET assistant_id = coalesce(assistant_id, %(assistant_id)s)
WHERE thread_id = %(thread_id)s
RETURNING assistant_id
"""
