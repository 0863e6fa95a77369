"""The authorized retriever: nearest chunks, of which only those OpenFGA allows leave the room.

First cut (post-filter): take the nearest candidates in the tenant, then one batch check of
(user can_read, agent reader_agent) per candidate document. Any error is a denial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from langchain_core.embeddings import Embeddings
from opentelemetry import trace
from psycopg import Error as PsycopgError

from mandate._db import Pool
from mandate.auth import Authorizer, Relationship
from mandate.retrieval import queries
from mandate.retrieval.errors import RetrievalUnavailableError

__all__ = ["AuthorizedRetriever", "RetrievedChunk", "Retriever"]

CANDIDATE_FACTOR = 8
MIN_SIMILARITY = 0.12
"""Below this cosine similarity a chunk is not about the question (lexical embedder scale)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RetrievedChunk:
    """A chunk the (user, agent) pair was allowed to read at retrieval time."""

    doc_id: str
    title: str
    chunk_index: int
    content: str
    similarity: float


class Retriever(Protocol):
    """What nodes need from retrieval."""

    async def retrieve(self, query: str, *, user: str, tenant: str, agent: str, k: int = 4) -> list[RetrievedChunk]: ...


class AuthorizedRetriever:
    """The real :class:`Retriever` over pgvector and OpenFGA."""

    def __init__(
        self,
        *,
        pool: Pool,
        authz: Authorizer,
        embeddings: Embeddings,
        tracer: trace.Tracer,
        min_similarity: float = MIN_SIMILARITY,
    ) -> None:
        self._pool = pool
        self._authz = authz
        self._embeddings = embeddings
        self._tracer = tracer
        self._min_similarity = min_similarity

    async def retrieve(self, query: str, *, user: str, tenant: str, agent: str, k: int = 4) -> list[RetrievedChunk]:
        """The up to ``k`` nearest relevant chunks that ``user`` and ``agent`` may both read.

        Args:
            query: The question.
            user: OpenFGA user (``user:alice``).
            tenant: The user's tenant; other tenants' documents are never candidates.
            agent: OpenFGA agent (``agent:retriever``) reading on the user's behalf.
            k: How many chunks to return at most.

        Raises:
            RetrievalUnavailableError: The vector store failed.
            AuthorizationUnavailableError: OpenFGA failed; nothing is returned.
        """
        with self._tracer.start_as_current_span("mandate.retrieve") as span:
            span.set_attribute("mandate.retrieval.k", k)
            candidates = await self._nearest(query, tenant=tenant, limit=k * CANDIDATE_FACTOR)
            doc_ids = list(dict.fromkeys(c.doc_id for c in candidates))
            questions = [q for d in doc_ids for q in _read_questions(user, agent, d)]
            decisions = await self._authz.batch_check(questions)
            allowed = {d for i, d in enumerate(doc_ids) if decisions[2 * i] and decisions[2 * i + 1]}
            chunks = [c for c in candidates if c.doc_id in allowed][:k]
            span.set_attribute("mandate.retrieval.candidates", len(candidates))
            span.set_attribute("mandate.retrieval.returned", len(chunks))
            return chunks

    async def _nearest(self, query: str, *, tenant: str, limit: int) -> list[RetrievedChunk]:
        import numpy as np

        vector = np.asarray(self._embeddings.embed_query(query), dtype=np.float32)
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    queries.NEAREST_CHUNKS_IN_TENANT, {"query": vector, "tenant": tenant, "limit": limit}
                )
                rows = await cur.fetchall()
        except PsycopgError as exc:
            raise RetrievalUnavailableError("The document store is unavailable.") from exc
        return [
            RetrievedChunk(
                doc_id=row["doc_id"],
                title=row["title"],
                chunk_index=row["chunk_index"],
                content=row["content"],
                similarity=float(row["similarity"]),
            )
            for row in rows
            if float(row["similarity"]) >= self._min_similarity
        ]


def _read_questions(user: str, agent: str, doc_id: str) -> tuple[Relationship, Relationship]:
    obj = f"document:{doc_id}"
    return Relationship(user, "can_read", obj), Relationship(agent, "reader_agent", obj)
