"""The authorized retriever: the true k nearest chunks among those the (user, agent) pair may read.

One query, when a :class:`~mandate.retrieval.directory.RelationshipDirectory` is configured:

1. Concurrently: embed the question; list the user's groups and viewable folders and check tenant
   membership and the agent's tenant-wide grant (OpenFGA, higher consistency); follow OpenFGA's
   change log (at most once a second by default) so document tokens match the tuples.
2. Size the authorized set from per-token chunk counts and scan it: exactly when small, by HNSW
   iterative scan when large (see ``_search``). The token filter runs inside the vector query.
3. Check the candidates' documents once more with OpenFGA (``can_read`` and ``reader_agent``, higher
   consistency). Denied documents are excluded and the round repeats until k chunks pass or the
   candidates run out: a stale token costs a round, never a leak and never a silent shortfall.

If a listing may be incomplete (OpenFGA's result cap or deadline), or no directory is configured,
the exhaustive path checks candidates in exact distance order until k pass. Any OpenFGA or
database error is a denial: nothing is returned.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from langchain_core.embeddings import Embeddings
from opentelemetry import trace

from mandate._db import Pool
from mandate.auth import Authorizer, Relationship
from mandate.auth import vocabulary as fga
from mandate.retrieval._acl import resolve_principals
from mandate.retrieval._search import Candidate, ChunkSearch, Scan, SearchPath, SearchTuning
from mandate.retrieval._sync import AclSync
from mandate.retrieval.directory import RelationshipDirectory
from mandate.retrieval.errors import IncompleteListingError

__all__ = ["AuthorizedRetriever", "RetrievedChunk", "Retriever"]

MIN_SIMILARITY = 0.12
"""Below this cosine similarity a chunk is not about the question (lexical embedder scale)."""
ACL_SYNC_INTERVAL_S = 1.0
"""How stale the ACL tokens may be for grants written directly in OpenFGA (revocations never wait)."""
_PRINCIPAL_CALLS = 3
"""OpenFGA calls that resolve principals: two listings and one batch check (plus one listing for a
restricted agent)."""


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


@dataclass(frozen=True, kw_only=True, slots=True)
class _Plan:
    """How one query scans, and what planning it cost."""

    scan: Scan | None
    """``None`` when nothing can be readable (no tenant membership, no agent grant, no token match)."""
    estimate: int
    """Upper bound of the authorized chunks (-1 when unknown)."""
    fga_calls: int
    sql_round_trips: int


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
        directory: RelationshipDirectory | None = None,
        tuning: SearchTuning | None = None,
        acl_sync_interval_s: float = ACL_SYNC_INTERVAL_S,
    ) -> None:
        """Wire the retriever.

        Args:
            pool: The shared database pool.
            authz: OpenFGA checks (the final, higher-consistency check of every returned chunk).
            embeddings: Embeds the question; must be the model the chunks were embedded with.
            tracer: Receives one ``mandate.retrieve`` span per query.
            min_similarity: Chunks less similar than this are not returned.
            directory: OpenFGA listings for the ACL-token paths; without it every query takes the
                exhaustive path (exact, but it checks candidates one page at a time).
            tuning: Search knobs; the defaults are the measured ones.
            acl_sync_interval_s: Follow OpenFGA's change log before a query when the last follow is
                older than this; 0 follows before every query. Only grants written directly in
                OpenFGA on a document wait for it; revocations are refused by the final check.
        """
        self._authz = authz
        self._embeddings = embeddings
        self._tracer = tracer
        self._min_similarity = min_similarity
        self._directory = directory
        self._search = ChunkSearch(pool=pool, tuning=tuning or SearchTuning())
        self._sync = AclSync(pool=pool, directory=directory) if directory is not None else None
        self._acl_sync_interval_s = acl_sync_interval_s

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
            vector, plan = await asyncio.gather(
                self._embeddings.aembed_query(query), self._plan(user=user, agent=agent, tenant=tenant, k=k)
            )
            chunks: list[RetrievedChunk] = []
            fga_calls, sql_round_trips, rounds, path = plan.fga_calls, plan.sql_round_trips, 0, "none"
            if plan.scan is not None:
                search = await self._checked_nearest(
                    np.asarray(vector, dtype=np.float32), plan.scan, user=user, agent=agent, tenant=tenant, k=k
                )
                chunks = await self._with_texts(search.allowed)
                fga_calls += search.fga_calls
                sql_round_trips += search.sql_round_trips + 1
                rounds, path = search.rounds, search.path
            span.set_attribute("mandate.retrieval.path", path)
            span.set_attribute("mandate.retrieval.estimate", plan.estimate)
            span.set_attribute("mandate.retrieval.rounds", rounds)
            span.set_attribute("mandate.retrieval.fga_calls", fga_calls)
            span.set_attribute("mandate.retrieval.sql_round_trips", sql_round_trips)
            span.set_attribute("mandate.retrieval.returned", len(chunks))
            return chunks

    async def _plan(self, *, user: str, agent: str, tenant: str, k: int) -> _Plan:
        """Resolve principals (and follow ACL changes), then size the authorized set and pick the scan."""
        if self._directory is None or self._sync is None:
            return _Plan(scan=self._search.exhaustive(k), estimate=-1, fga_calls=0, sql_round_trips=0)
        try:
            principals, synced = await asyncio.gather(
                resolve_principals(directory=self._directory, authz=self._authz, user=user, agent=agent, tenant=tenant),
                self._sync.catch_up(max_age_s=self._acl_sync_interval_s),
            )
        except IncompleteListingError:
            return _Plan(scan=self._search.exhaustive(k), estimate=-1, fga_calls=_PRINCIPAL_CALLS, sql_round_trips=0)
        fga_calls = _PRINCIPAL_CALLS + (principals.agent_documents is not None) + synced.fga_calls
        if not principals.tenant_member or principals.agent_documents == ():
            return _Plan(scan=None, estimate=0, fga_calls=fga_calls, sql_round_trips=synced.sql_round_trips)
        estimate = await self._search.estimate(tenant=tenant, tokens=principals.tokens)
        scan = self._search.plan(estimate, documents=principals.agent_documents, k=k) if estimate.tokens else None
        return _Plan(scan=scan, estimate=estimate.chunks, fga_calls=fga_calls, sql_round_trips=synced.sql_round_trips + 1)

    async def _checked_nearest(
        self, vector: np.ndarray, scan: Scan, *, user: str, agent: str, tenant: str, k: int
    ) -> _CheckedSearch:
        """Rounds of (nearest candidates → strong check of new documents) until k pass or none are left."""
        decided: dict[str, bool] = {}
        limit = scan.page
        fga_calls = sql_round_trips = rounds = 0
        while True:
            rounds += 1
            denied = frozenset(doc for doc, allowed in decided.items() if not allowed)
            candidates, used = await self._search.nearest(vector, scan, tenant=tenant, excluded=denied, limit=limit)
            sql_round_trips += 1 if used.path == scan.path else 2
            scan = used
            relevant = [c for c in candidates if 1.0 - c.distance >= self._min_similarity]
            undecided = list(dict.fromkeys(c.doc_id for c in relevant if c.doc_id not in decided))
            if undecided:
                decisions = await self._authz.batch_check(
                    [q for doc in undecided for q in _read_questions(user, agent, doc)], strong=True
                )
                fga_calls += 1
                decided.update((doc, decisions[2 * i] and decisions[2 * i + 1]) for i, doc in enumerate(undecided))
            allowed = [c for c in relevant if decided[c.doc_id]]
            exhausted = len(candidates) < limit or len(relevant) < len(candidates)
            if len(allowed) >= k or exhausted:
                return _CheckedSearch(
                    allowed=allowed[:k], path=scan.path, rounds=rounds, fga_calls=fga_calls, sql_round_trips=sql_round_trips
                )
            if scan.path == "exhaustive":
                limit *= 4

    async def _with_texts(self, allowed: list[Candidate]) -> list[RetrievedChunk]:
        """Read content and title of the chunks that passed, in rank order."""
        texts = await self._search.texts([(c.doc_id, c.chunk_index) for c in allowed])
        return [
            RetrievedChunk(
                doc_id=c.doc_id,
                title=texts[(c.doc_id, c.chunk_index)][1],
                chunk_index=c.chunk_index,
                content=texts[(c.doc_id, c.chunk_index)][0],
                similarity=1.0 - c.distance,
            )
            for c in allowed
            if (c.doc_id, c.chunk_index) in texts
        ]


@dataclass(frozen=True, kw_only=True, slots=True)
class _CheckedSearch:
    """The outcome of the check-and-refill rounds of one query."""

    allowed: list[Candidate]
    path: SearchPath
    rounds: int
    fga_calls: int
    sql_round_trips: int


def _read_questions(user: str, agent: str, doc_id: str) -> tuple[Relationship, Relationship]:
    obj = fga.document(doc_id)
    return Relationship(user, fga.CAN_READ, obj), Relationship(agent, fga.READER_AGENT, obj)
