"""The authorized retriever: the true k nearest chunks among those the (user, agent) pair may read.

One query, when a :class:`~mandate.retrieval.directory.RelationshipDirectory` is configured:

1. Concurrently with embedding the question: follow OpenFGA's change log up to the moment the query
   started (``_feed``: one ReadChanges call when nothing changed). Changes rewrite the ACL tokens of
   the documents they touch and drop the principal closures they may touch, before step 2.
2. The (user, agent, tenant) closure: kept from an earlier query unless a change touched it, else
   resolved now (groups, viewable folders, tenant membership, the agent's grant; OpenFGA, higher
   consistency) (``_principals``).
3. One SQL round trip: the k nearest chunks carrying one of the closure's tokens, with their text;
   exactly when the authorized set is small, by HNSW iterative scan when large (``_search``).

When the closure is kept, step 3 runs while the change log is read, and its answer is used only if
that read found nothing new and no other query's sync applied a change meanwhile (the feed's
generation did not move); otherwise it is thrown away and steps 2-3 run again after the changes
are applied. A quiet query thus costs max(ReadChanges, SQL), not their sum.

Both sides of the token match are exact as of the query's start, so nothing is checked afterwards:
a chunk is returned only if its document names (directly, as owner, or through a folder) one of the
user's tokens in OpenFGA, the user is a member of the document's tenant, and the agent may read it.

If a listing may be incomplete (OpenFGA's result cap or deadline), or no directory is configured,
the exhaustive path checks candidates in exact distance order with OpenFGA until k pass. Any
OpenFGA or database error is a denial: nothing is returned.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from langchain_core.embeddings import Embeddings
from opentelemetry import trace

from mandate._db import Pool
from mandate.auth import Authorizer, Relationship
from mandate.auth import vocabulary as fga
from mandate.retrieval._acl import resolve_principals
from mandate.retrieval._feed import ChangeFeed, FeedReport
from mandate.retrieval._principals import CachedPrincipals, PrincipalCache
from mandate.retrieval._search import Candidate, ChunkSearch, Scan, SearchPath, SearchTuning
from mandate.retrieval.directory import RelationshipDirectory
from mandate.retrieval.errors import IncompleteListingError

__all__ = ["AuthorizedRetriever", "RetrievedChunk", "Retriever"]

MIN_SIMILARITY = 0.12
"""Below this cosine similarity a chunk is not about the question (lexical embedder scale)."""
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
    principals_cached: bool = False
    feed_changes: int = 0


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
        feed: ChangeFeed | None = None,
        principals: PrincipalCache | None = None,
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
            feed: The change-log follower (default: one of its own over ``pool`` and ``directory``).
            principals: The closure cache (default: one of its own, subscribed to ``feed``).
        """
        self._authz = authz
        self._embeddings = embeddings
        self._tracer = tracer
        self._min_similarity = min_similarity
        self._directory = directory
        self._search = ChunkSearch(pool=pool, tuning=tuning or SearchTuning())
        self._feed = feed or (ChangeFeed(pool=pool, directory=directory) if directory is not None else None)
        self._principals = principals or PrincipalCache()
        if self._feed is not None and principals is None:
            self._feed.subscribe(self._principals.invalidate)

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
        started = time.monotonic()
        with self._tracer.start_as_current_span("mandate.retrieve") as span:
            span.set_attribute("mandate.retrieval.k", k)
            if self._feed is None or self._directory is None:
                embedded = await self._embed(query)
                outcome = await self._exhaustive(embedded, user=user, agent=agent, tenant=tenant, k=k, plan=_Plan(
                    scan=self._search.exhaustive(k), estimate=-1, fga_calls=0, sql_round_trips=0
                ))
            else:
                outcome = await self._followed(query, user=user, agent=agent, tenant=tenant, k=k, started=started)
            for name, value in outcome.attributes().items():
                span.set_attribute(f"mandate.retrieval.{name}", value)
            return outcome.chunks

    async def _embed(self, query: str) -> np.ndarray:
        return np.asarray(await self._embeddings.aembed_query(query), dtype=np.float32)

    async def _followed(self, query: str, *, user: str, agent: str, tenant: str, k: int, started: float) -> _Outcome:
        """The token paths: follow the change log while the question is embedded and, when the closure
        is kept, while the vector query runs; use that query only if no change was applied meanwhile."""
        assert self._feed is not None
        sync: asyncio.Future[FeedReport] = asyncio.ensure_future(self._feed.sync(since=started))
        try:
            embedded = await self._embed(query)
            entry = self._principals.get(user, agent, tenant)
            generation = self._feed.idle_generation()
            speculative: _Outcome | None = None
            if entry is not None and generation is not None and self._principals.estimate_fresh(entry):
                plan = self._plan_from(entry, k=k, fga_calls=0, sql_round_trips=0, cached=True)
                speculative = await self._token_search(embedded, plan, tenant=tenant, k=k)
            synced = await sync
        except BaseException:
            sync.cancel()
            await asyncio.gather(sync, return_exceptions=True)
            raise
        if speculative is not None and synced.changes == 0 and self._feed.generation == generation:
            return speculative.plus(fga_calls=synced.fga_calls, sql_round_trips=synced.sql_round_trips, overlapped=True)
        plan = await self._plan(user=user, agent=agent, tenant=tenant, k=k)
        plan = replace(
            plan, fga_calls=plan.fga_calls + synced.fga_calls, sql_round_trips=plan.sql_round_trips + synced.sql_round_trips,
            feed_changes=synced.changes,
        )
        if plan.scan is not None and plan.scan.path == "exhaustive":
            return await self._exhaustive(embedded, user=user, agent=agent, tenant=tenant, k=k, plan=plan)
        return await self._token_search(embedded, plan, tenant=tenant, k=k)

    async def _plan(self, *, user: str, agent: str, tenant: str, k: int) -> _Plan:
        """After the change log was followed: take (or resolve) the closure, size the authorized set, pick the scan."""
        assert self._directory is not None
        fga_calls = sql_round_trips = 0
        entry = self._principals.get(user, agent, tenant)
        cached = entry is not None
        if entry is None:
            generation = self._principals.generation
            try:
                principals = await resolve_principals(
                    directory=self._directory, authz=self._authz, user=user, agent=agent, tenant=tenant
                )
            except IncompleteListingError:
                return _Plan(scan=self._search.exhaustive(k), estimate=-1, fga_calls=_PRINCIPAL_CALLS, sql_round_trips=0)
            fga_calls += _PRINCIPAL_CALLS + (principals.agent_documents is not None)
            entry = self._principals.put(user, agent, tenant, principals, generation=generation)
        if entry.principals.tenant_member and entry.principals.agent_documents != () and not self._principals.estimate_fresh(entry):
            estimate = await self._search.estimate(tenant=tenant, tokens=entry.principals.tokens)
            self._principals.set_estimate(entry, estimate.chunks)
            sql_round_trips += 1
        return self._plan_from(entry, k=k, fga_calls=fga_calls, sql_round_trips=sql_round_trips, cached=cached)

    def _plan_from(self, entry: CachedPrincipals, *, k: int, fga_calls: int, sql_round_trips: int, cached: bool) -> _Plan:
        """The scan for a closure: none when nothing can be readable (no membership, no agent grant)."""
        principals = entry.principals
        if not principals.tenant_member or principals.agent_documents == ():
            return _Plan(scan=None, estimate=0, fga_calls=fga_calls, sql_round_trips=sql_round_trips, principals_cached=cached)
        chunks = entry.estimate if entry.estimate is not None else -1
        scan = self._search.plan_tokens(principals.tokens, chunks=chunks, documents=principals.agent_documents, k=k)
        return _Plan(scan=scan, estimate=chunks, fga_calls=fga_calls, sql_round_trips=sql_round_trips, principals_cached=cached)

    async def _token_search(self, embedded: np.ndarray, plan: _Plan, *, tenant: str, k: int) -> _Outcome:
        """One SQL round trip over the closure's tokens (exact tokens: nothing is checked afterwards)."""
        if plan.scan is None:
            return _Outcome(chunks=[], plan=plan, path="none", rounds=0)
        found, used, trips = await self._search.nearest_with_texts(embedded, plan.scan, tenant=tenant, k=k)
        chunks = [
            RetrievedChunk(doc_id=f.doc_id, title=f.title, chunk_index=f.chunk_index, content=f.content, similarity=1.0 - f.distance)
            for f in found
            if 1.0 - f.distance >= self._min_similarity
        ]
        return _Outcome(chunks=chunks, plan=replace(plan, sql_round_trips=plan.sql_round_trips + trips), path=used.path, rounds=1)

    async def _exhaustive(self, embedded: np.ndarray, *, user: str, agent: str, tenant: str, k: int, plan: _Plan) -> _Outcome:
        """No usable token set: candidates in exact order, each document checked in OpenFGA, until k pass."""
        assert plan.scan is not None
        search = await self._checked_nearest(embedded, plan.scan, user=user, agent=agent, tenant=tenant, k=k)
        chunks = await self._with_texts(search.allowed)
        plan = replace(
            plan, fga_calls=plan.fga_calls + search.fga_calls, sql_round_trips=plan.sql_round_trips + search.sql_round_trips + 1
        )
        return _Outcome(chunks=chunks, plan=plan, path=search.path, rounds=search.rounds)

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
class _Outcome:
    """What one query returns, and what its span reports."""

    chunks: list[RetrievedChunk]
    plan: _Plan
    path: str
    rounds: int
    overlapped: bool = False
    """Whether the vector query ran while the change log was read (the closure was kept, nothing changed)."""

    def plus(self, *, fga_calls: int, sql_round_trips: int, overlapped: bool) -> _Outcome:
        plan = replace(
            self.plan, fga_calls=self.plan.fga_calls + fga_calls, sql_round_trips=self.plan.sql_round_trips + sql_round_trips
        )
        return replace(self, plan=plan, overlapped=overlapped)

    def attributes(self) -> dict[str, str | int | bool]:
        return {
            "path": self.path, "estimate": self.plan.estimate, "rounds": self.rounds, "fga_calls": self.plan.fga_calls,
            "sql_round_trips": self.plan.sql_round_trips, "principals_cached": self.plan.principals_cached,
            "feed_changes": self.plan.feed_changes, "overlapped": self.overlapped, "returned": len(self.chunks),
        }


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
