"""SQL of the retrieval room, as named constants, and its numbered migrations."""

MIGRATIONS = [
    # 1: documents and their chunks; HNSW for cosine distance.
    """
    CREATE TABLE mandate.documents (
        doc_id text PRIMARY KEY,
        tenant text NOT NULL,
        folder text,
        title text NOT NULL,
        source text NOT NULL,
        content_sha256 text NOT NULL,
        ingested_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE mandate.chunks (
        doc_id text NOT NULL REFERENCES mandate.documents (doc_id) ON DELETE CASCADE,
        chunk_index int NOT NULL,
        content text NOT NULL,
        embedding vector(384) NOT NULL,
        PRIMARY KEY (doc_id, chunk_index)
    );
    CREATE INDEX chunks_embedding_hnsw ON mandate.chunks USING hnsw (embedding vector_cosine_ops);
    CREATE INDEX documents_tenant ON mandate.documents (tenant);
    """,
    # 2: ACL tokens. Each document carries the principals its direct tuples name (users, groups,
    # parent folders); each chunk carries a copy, with its tenant, so the vector query filters on
    # them (GIN overlap). Per-token chunk counts, kept by triggers, size the authorized set.
    # Vectors are stored inline (PLAIN) so exact scans never fetch them from TOAST. The HNSW graph
    # is rebuilt denser (m=48, ef_construction=200): on clustered data m=16 plateaued at recall 0.96
    # whatever ef_search, m=32 at 0.988 for queries far from the authorized set (bench/retrieval).
    """
    ALTER TABLE mandate.documents ADD COLUMN acl text[] NOT NULL DEFAULT '{}';
    ALTER TABLE mandate.chunks ADD COLUMN tenant text, ADD COLUMN acl text[] NOT NULL DEFAULT '{}';
    UPDATE mandate.chunks c SET tenant = d.tenant FROM mandate.documents d WHERE d.doc_id = c.doc_id;
    ALTER TABLE mandate.chunks ALTER COLUMN tenant SET NOT NULL;
    ALTER TABLE mandate.chunks ALTER COLUMN embedding SET STORAGE PLAIN;
    CREATE INDEX chunks_acl ON mandate.chunks USING gin (acl);
    DROP INDEX mandate.chunks_embedding_hnsw;
    CREATE INDEX chunks_embedding_hnsw ON mandate.chunks
        USING hnsw (embedding vector_cosine_ops) WITH (m = 48, ef_construction = 200);

    CREATE TABLE mandate.acl_token_stats (
        tenant text NOT NULL,
        token text NOT NULL,
        chunks bigint NOT NULL,
        PRIMARY KEY (tenant, token)
    );
    CREATE FUNCTION mandate.acl_token_stats_apply() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            INSERT INTO mandate.acl_token_stats AS s (tenant, token, chunks)
            SELECT tenant, token, -count(*) FROM old_rows, unnest(acl) AS token
            GROUP BY tenant, token ORDER BY tenant, token
            ON CONFLICT (tenant, token) DO UPDATE SET chunks = s.chunks + EXCLUDED.chunks;
        END IF;
        IF TG_OP IN ('UPDATE', 'INSERT') THEN
            INSERT INTO mandate.acl_token_stats AS s (tenant, token, chunks)
            SELECT tenant, token, count(*) FROM new_rows, unnest(acl) AS token
            GROUP BY tenant, token ORDER BY tenant, token
            ON CONFLICT (tenant, token) DO UPDATE SET chunks = s.chunks + EXCLUDED.chunks;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER chunks_acl_stats_insert AFTER INSERT ON mandate.chunks
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mandate.acl_token_stats_apply();
    CREATE TRIGGER chunks_acl_stats_update AFTER UPDATE ON mandate.chunks
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION mandate.acl_token_stats_apply();
    CREATE TRIGGER chunks_acl_stats_delete AFTER DELETE ON mandate.chunks
        REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION mandate.acl_token_stats_apply();

    CREATE TABLE mandate.acl_sync_cursors (
        store_id text PRIMARY KEY,
        continuation_token text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    """,
    # 3: the change feed follows every object type from a time, not a document-only cursor: its
    # position is a time before which every change is applied (see _feed). Old cursors are dropped,
    # so the first sync replays the log once.
    """
    DELETE FROM mandate.acl_sync_cursors;
    ALTER TABLE mandate.acl_sync_cursors DROP COLUMN continuation_token, ADD COLUMN applied_through timestamptz;
    """,
]

# -- ingestion -----------------------------------------------------------------------------------

SELECT_DOCUMENT = "SELECT tenant, content_sha256, acl FROM mandate.documents WHERE doc_id = %(doc_id)s"

SELECT_DOCUMENT_FOR_UPDATE = SELECT_DOCUMENT + " FOR UPDATE"

UPSERT_DOCUMENT = """
INSERT INTO mandate.documents (doc_id, tenant, folder, title, source, content_sha256, acl)
VALUES (%(doc_id)s, %(tenant)s, %(folder)s, %(title)s, %(source)s, %(content_sha256)s, %(acl)s)
ON CONFLICT (doc_id) DO UPDATE SET
    folder = EXCLUDED.folder, title = EXCLUDED.title, source = EXCLUDED.source,
    content_sha256 = EXCLUDED.content_sha256, acl = EXCLUDED.acl, ingested_at = now()
"""

DELETE_CHUNKS = "DELETE FROM mandate.chunks WHERE doc_id = %(doc_id)s"

INSERT_CHUNK = """
INSERT INTO mandate.chunks (doc_id, chunk_index, tenant, acl, content, embedding)
VALUES (%(doc_id)s, %(chunk_index)s, %(tenant)s, %(acl)s, %(content)s, %(embedding)s)
"""

UPDATE_DOCUMENT_ACL = "UPDATE mandate.documents SET acl = %(acl)s WHERE doc_id = %(doc_id)s"

UPDATE_CHUNKS_ACL = "UPDATE mandate.chunks SET acl = %(acl)s WHERE doc_id = %(doc_id)s"

DELETE_DOCUMENT = "DELETE FROM mandate.documents WHERE doc_id = %(doc_id)s RETURNING tenant"

# -- ACL sync ------------------------------------------------------------------------------------

SELECT_DOCUMENT_ACLS = "SELECT doc_id, tenant, acl FROM mandate.documents WHERE doc_id = ANY(%(doc_ids)s::text[])"

SELECT_FEED_POSITION = """
SELECT applied_through, coalesce(applied_through > now() + interval '1 minute', false) AS from_future
FROM mandate.acl_sync_cursors WHERE store_id = %(store_id)s
"""
"""The stored position; one more than a minute ahead of the database's clock is refused."""

UPSERT_FEED_POSITION = """
INSERT INTO mandate.acl_sync_cursors AS p (store_id, applied_through) VALUES (%(store_id)s, %(position)s)
ON CONFLICT (store_id) DO UPDATE
SET applied_through = GREATEST(p.applied_through, EXCLUDED.applied_through), updated_at = now()
"""
"""Replicas advance the shared position; it never moves back (only :data:`RESET_FEED_POSITION` does)."""

RESET_FEED_POSITION = """
INSERT INTO mandate.acl_sync_cursors AS p (store_id, applied_through) VALUES (%(store_id)s, %(position)s)
ON CONFLICT (store_id) DO UPDATE SET applied_through = EXCLUDED.applied_through, updated_at = now()
"""

# -- search --------------------------------------------------------------------------------------

ESTIMATE_AUTHORIZED = """
SELECT coalesce(sum(chunks), 0)::bigint AS chunks, coalesce(array_agg(token ORDER BY token), '{}') AS tokens
FROM mandate.acl_token_stats
WHERE tenant = %(tenant)s AND token = ANY(%(tokens)s::text[]) AND chunks > 0
"""
"""An upper bound of the chunks the tokens reach (overlaps count twice), and the tokens that reach any."""

EXACT_SCAN_SETTINGS = "SELECT set_config('enable_indexscan', 'off', true)"
"""Keeps the planner off the HNSW index for one transaction: the scan below is then exact."""

HNSW_SCAN_SETTINGS = """
SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),
       set_config('hnsw.ef_search', %(ef_search)s, true),
       set_config('hnsw.max_scan_tuples', %(max_scan_tuples)s, true)
"""

NEAREST_CANDIDATES = """
SELECT doc_id, chunk_index, distance FROM (
    SELECT doc_id, chunk_index, embedding <=> %(query)s AS distance
    FROM mandate.chunks
    WHERE tenant = %(tenant)s
      AND (%(tokens)s::text[] IS NULL OR acl && %(tokens)s::text[])
      AND (%(documents)s::text[] IS NULL OR doc_id = ANY(%(documents)s::text[]))
      AND doc_id <> ALL(%(excluded)s::text[])
    ORDER BY distance
    LIMIT %(limit)s
) AS hits
ORDER BY distance
"""
"""The nearest chunks of a tenant, optionally only those carrying one of ``tokens`` and in ``documents``.

The outer ORDER BY restores exact order after a relaxed HNSW iterative scan.
"""

NEAREST_WITH_TEXTS = """
SELECT top.doc_id, top.chunk_index, top.distance, top.found, c.content, d.title FROM (
    SELECT doc_id, chunk_index, distance, count(*) OVER () AS found FROM (
        SELECT doc_id, chunk_index, embedding <=> %(query)s AS distance
        FROM mandate.chunks
        WHERE tenant = %(tenant)s
          AND acl && %(tokens)s::text[]
          AND (%(documents)s::text[] IS NULL OR doc_id = ANY(%(documents)s::text[]))
        ORDER BY distance
        LIMIT %(limit)s
    ) AS hits
    ORDER BY distance
    LIMIT %(k)s
) AS top
JOIN mandate.chunks c USING (doc_id, chunk_index)
JOIN mandate.documents d USING (doc_id)
ORDER BY top.distance
"""
"""The k nearest authorized chunks of a tenant with their text, from ``limit`` scanned rows.

``found`` counts the scanned rows: fewer than ``limit`` after an HNSW scan means its budget ran out.
"""

SELECT_CHUNK_TEXTS = """
SELECT c.doc_id, c.chunk_index, c.content, d.title
FROM unnest(%(doc_ids)s::text[], %(chunk_indexes)s::int[]) AS k (doc_id, chunk_index)
JOIN mandate.chunks c USING (doc_id, chunk_index)
JOIN mandate.documents d USING (doc_id)
"""
"""Content and title of the chunks that passed the final check (only those are ever read)."""
