"""Ingestion: a document becomes chunks in pgvector and relationship tuples in OpenFGA.

Tuples are written first, then the chunks in one transaction. A chunk therefore never exists
without the tuples that say who may read it; if the chunk write fails, the orphan tuples grant
nothing because there is nothing to read. Re-ingesting unchanged content is a no-op.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from langchain_core.embeddings import Embeddings
from langchain_text_splitters import RecursiveCharacterTextSplitter
from psycopg import Error as PsycopgError

from mandate._db import Pool
from mandate.auth import Authorizer, Relationship
from mandate.retrieval import queries
from mandate.retrieval.errors import IngestionError

__all__ = ["DocumentSpec", "Ingestor"]

CHUNK_SIZE = 800
CHUNK_OVERLAP = 100


@dataclass(frozen=True, kw_only=True, slots=True)
class DocumentSpec:
    """A document to ingest and who may read it."""

    doc_id: str
    """Stable id; also the OpenFGA object ``document:<doc_id>``."""
    tenant: str
    title: str
    text: str
    source: str
    """Where it came from (a path or URL), for citations."""
    folder: str | None = None
    """Folder id; the document inherits the folder's viewers."""
    viewers: tuple[str, ...] = ()
    """Direct grants as OpenFGA users: ``user:bob``, ``group:acme-finance#member``."""

    def relationships(self) -> list[Relationship]:
        """The tuples that place this document in its tenant, folder and sharing."""
        obj = f"document:{self.doc_id}"
        tuples = [Relationship(f"tenant:{self.tenant}", "tenant", obj)]
        if self.folder:
            tuples.append(Relationship(f"folder:{self.folder}", "parent", obj))
        tuples.extend(Relationship(viewer, "viewer", obj) for viewer in self.viewers)
        return tuples


class Ingestor:
    """Writes documents into the vector store and their tuples into OpenFGA."""

    def __init__(self, *, pool: Pool, authz: Authorizer, embeddings: Embeddings) -> None:
        self._pool = pool
        self._authz = authz
        self._embeddings = embeddings
        self._splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)

    async def ingest(self, spec: DocumentSpec) -> int:
        """Ingest one document; returns the number of chunks written (0 when unchanged).

        Raises:
            IngestionError: The document is empty or the database rejected it.
            AuthorizationUnavailableError: Its tuples could not be written (nothing was stored).
        """
        if not spec.text.strip():
            raise IngestionError(f"Document {spec.doc_id!r} has no text.")
        digest = hashlib.sha256(spec.text.encode()).hexdigest()
        await self._authz.write(writes=spec.relationships())
        chunks = self._splitter.split_text(spec.text)
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = await conn.execute(queries.SELECT_DOCUMENT_HASH, {"doc_id": spec.doc_id})
                row = await cur.fetchone()
                if row and row["content_sha256"] == digest:
                    return 0
                vectors = self._embeddings.embed_documents(chunks)
                await conn.execute(
                    queries.UPSERT_DOCUMENT,
                    {
                        "doc_id": spec.doc_id,
                        "tenant": spec.tenant,
                        "folder": spec.folder,
                        "title": spec.title,
                        "source": spec.source,
                        "content_sha256": digest,
                    },
                )
                await conn.execute(queries.DELETE_CHUNKS, {"doc_id": spec.doc_id})
                async with conn.cursor() as cur:
                    await cur.executemany(
                        queries.INSERT_CHUNK,
                        [
                            {"doc_id": spec.doc_id, "chunk_index": i, "content": text, "embedding": _vector(vec)}
                            for i, (text, vec) in enumerate(zip(chunks, vectors, strict=True))
                        ],
                    )
        except PsycopgError as exc:
            raise IngestionError(f"Document {spec.doc_id!r} could not be stored.") from exc
        return len(chunks)


def _vector(values: list[float]) -> object:
    import numpy as np

    return np.asarray(values, dtype=np.float32)
