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
]

SELECT_DOCUMENT_HASH = "SELECT content_sha256 FROM mandate.documents WHERE doc_id = %(doc_id)s"

UPSERT_DOCUMENT = """
INSERT INTO mandate.documents (doc_id, tenant, folder, title, source, content_sha256)
VALUES (%(doc_id)s, %(tenant)s, %(folder)s, %(title)s, %(source)s, %(content_sha256)s)
ON CONFLICT (doc_id) DO UPDATE SET
    tenant = EXCLUDED.tenant, folder = EXCLUDED.folder, title = EXCLUDED.title,
    source = EXCLUDED.source, content_sha256 = EXCLUDED.content_sha256, ingested_at = now()
"""

DELETE_CHUNKS = "DELETE FROM mandate.chunks WHERE doc_id = %(doc_id)s"

INSERT_CHUNK = """
INSERT INTO mandate.chunks (doc_id, chunk_index, content, embedding)
VALUES (%(doc_id)s, %(chunk_index)s, %(content)s, %(embedding)s)
"""

NEAREST_CHUNKS_IN_TENANT = """
SELECT c.doc_id, c.chunk_index, c.content, d.title, 1 - (c.embedding <=> %(query)s) AS similarity
FROM mandate.chunks c JOIN mandate.documents d USING (doc_id)
WHERE d.tenant = %(tenant)s
ORDER BY c.embedding <=> %(query)s
LIMIT %(limit)s
"""
