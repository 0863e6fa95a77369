"""The anchor: Mandate's retriever as it was before the change feed (commit 277096b), kept for comparison.

Per query: resolve the principals in OpenFGA (two listings and a higher-consistency batch check),
follow the document change log at most once a second, size the authorized set (one SQL), scan it
(one SQL), check the candidates' documents with a higher-consistency batch check (the ~14 ms this
work removes from the hot path), refill until k pass, then read the texts (one SQL). It reuses the
retrieval room's own search and principal code, so only the flow differs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from bench.retrieval.store import BenchStore
from mandate.auth import Relationship
from mandate.retrieval import ChangeFeed, SearchTuning
from mandate.retrieval._acl import resolve_principals
from mandate.retrieval._search import Candidate, ChunkSearch

__all__ = ["AnchorRetriever", "AnchorResult"]

SYNC_INTERVAL_S = 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class AnchorResult:
    rows: list[tuple[str, int]]
    fga_calls: int
    sql_round_trips: int
    path: str


class AnchorRetriever:
    """Today's flow: principals and a final strong check on every query."""

    def __init__(self, store: BenchStore) -> None:
        self._store = store
        self._search = ChunkSearch(pool=store.pool, tuning=SearchTuning())
        self._feed = ChangeFeed(pool=store.pool, directory=store.directory)
        self._last_sync = -float("inf")

    async def retrieve(self, vector: np.ndarray, *, user: str, agent: str, tenant: str, k: int) -> AnchorResult:
        """The k nearest chunks ``user`` and ``agent`` may read, the way the service did it before."""
        fga_calls, sql = 3, 0
        if time.monotonic() - self._last_sync >= SYNC_INTERVAL_S:
            self._last_sync = time.monotonic()
            report = await self._feed.sync()
            fga_calls, sql = fga_calls + report.fga_calls, sql + report.sql_round_trips
        principals = await resolve_principals(
            directory=self._store.directory, authz=self._store.authz, user=user, agent=agent, tenant=tenant
        )
        if not principals.tenant_member:
            return AnchorResult(rows=[], fga_calls=fga_calls, sql_round_trips=sql, path="none")
        estimate = await self._search.estimate(tenant=tenant, tokens=principals.tokens)
        sql += 1
        if not estimate.tokens:
            return AnchorResult(rows=[], fga_calls=fga_calls, sql_round_trips=sql, path="none")
        scan = self._search.plan(estimate, documents=principals.agent_documents, k=k)
        decided: dict[str, bool] = {}
        while True:
            denied = frozenset(doc for doc, allowed in decided.items() if not allowed)
            candidates, used = await self._search.nearest(vector, scan, tenant=tenant, excluded=denied, limit=scan.page)
            sql += 1 if used.path == scan.path else 2
            scan = used
            undecided = list(dict.fromkeys(c.doc_id for c in candidates if c.doc_id not in decided))
            if undecided:
                questions = [q for doc in undecided for q in _read_questions(user, agent, doc)]
                decisions = await self._store.authz.batch_check(questions, strong=True)
                fga_calls += 1
                decided.update((doc, decisions[2 * i] and decisions[2 * i + 1]) for i, doc in enumerate(undecided))
            allowed: list[Candidate] = [c for c in candidates if decided[c.doc_id]]
            if len(allowed) >= k or len(candidates) < scan.page:
                break
        texts = await self._search.texts([(c.doc_id, c.chunk_index) for c in allowed[:k]])
        sql += 1
        rows = [(c.doc_id, c.chunk_index) for c in allowed[:k] if (c.doc_id, c.chunk_index) in texts]
        return AnchorResult(rows=rows, fga_calls=fga_calls, sql_round_trips=sql, path=scan.path)


def _read_questions(user: str, agent: str, doc_id: str) -> tuple[Relationship, Relationship]:
    obj = f"document:{doc_id}"
    return Relationship(user, "can_read", obj), Relationship(agent, "reader_agent", obj)
