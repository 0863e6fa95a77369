"""Keeps document ACL tokens equal to OpenFGA's tuples when they change outside ingestion.

The follower reads OpenFGA's change log for ``document`` objects. A written grant whose token the
document already carries (ingestion wrote it) needs nothing; any other grant change marks the
document stale, and a stale document's tokens are rewritten from its current tuples under a row
lock. Rewriting from the current state, not replaying operations, makes the work idempotent and
order-independent, so any process may do it any number of times. Until a change is followed, a
revoked grant is still refused by the final OpenFGA check; only a new grant waits, and the
retriever follows the log at most ``acl_sync_interval_s`` before each query.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from psycopg import Error as PsycopgError

from mandate._db import Pool
from mandate.auth import vocabulary as fga
from mandate.retrieval import queries
from mandate.retrieval._acl import GRANTING_RELATIONS, document_acl
from mandate.retrieval.directory import RelationshipDirectory, TupleChange
from mandate.retrieval.errors import RetrievalUnavailableError

__all__ = ["AclSync", "SyncReport"]

RECONCILE_CONCURRENCY = 4
"""Documents reconciled at once (each holds a pooled connection while it reads OpenFGA)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncReport:
    """What one :meth:`AclSync.catch_up` did."""

    documents: int
    """Documents whose tokens were rewritten from OpenFGA."""
    fga_calls: int
    """Change-log pages and tuple reads sent to OpenFGA."""
    sql_round_trips: int


class AclSync:
    """Follows OpenFGA's change log and rewrites the tokens of documents whose grants changed."""

    def __init__(self, *, pool: Pool, directory: RelationshipDirectory) -> None:
        self._pool = pool
        self._directory = directory
        self._cursor: str | None = None
        self._lock = asyncio.Lock()
        self._last_started = -float("inf")

    async def catch_up(self, *, max_age_s: float = 0.0) -> SyncReport:
        """Apply every change logged so far, unless the last catch-up started less than ``max_age_s`` ago.

        Raises:
            AuthorizationUnavailableError: OpenFGA erred (tokens are left as they were).
            RetrievalUnavailableError: The database erred.
        """
        async with self._lock:
            if time.monotonic() - self._last_started < max_age_s:
                return SyncReport(documents=0, fga_calls=0, sql_round_trips=0)
            self._last_started = time.monotonic()
            sql_round_trips = 0
            if self._cursor is None:
                self._cursor = await self._load_cursor()
                sql_round_trips += 1
            cursor, stale, pages = self._cursor, set[str](), 0
            while True:
                changes, cursor = await self._directory.read_changes(object_type="document", cursor=cursor)
                pages += 1
                if not changes:
                    break
                stale |= await self._stale_documents(changes)
                sql_round_trips += 1
            semaphore = asyncio.Semaphore(RECONCILE_CONCURRENCY)

            async def reconcile(doc_id: str) -> None:
                async with semaphore:
                    await self.reconcile(doc_id)

            await asyncio.gather(*(reconcile(doc_id) for doc_id in sorted(stale)))
            if cursor != self._cursor:
                await self._save_cursor(cursor)
                self._cursor = cursor
                sql_round_trips += 1
            return SyncReport(
                documents=len(stale), fga_calls=pages + len(stale), sql_round_trips=sql_round_trips + len(stale)
            )

    async def reconcile(self, doc_id: str) -> None:
        """Rewrite the tokens of one document from its tuples in OpenFGA (no-op if not ingested).

        Raises:
            AuthorizationUnavailableError: OpenFGA erred.
            RetrievalUnavailableError: The database erred.
        """
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = await conn.execute(queries.SELECT_DOCUMENT_FOR_UPDATE, {"doc_id": doc_id})
                row = await cur.fetchone()
                if row is None:
                    return
                acl = list(document_acl(await self._directory.read(fga.document(doc_id))))
                if acl != row["acl"]:
                    await conn.execute(queries.UPDATE_DOCUMENT_ACL, {"doc_id": doc_id, "acl": acl})
                    await conn.execute(queries.UPDATE_CHUNKS_ACL, {"doc_id": doc_id, "acl": acl})
        except PsycopgError as exc:
            raise RetrievalUnavailableError("The document store is unavailable.") from exc

    async def _stale_documents(self, changes: list[TupleChange]) -> set[str]:
        """Documents whose tokens these changes may have made wrong (deletions, grants not yet carried)."""
        granting = [c for c in changes if c.relationship.relation in GRANTING_RELATIONS]
        stale = {fga.document_id(c.relationship.object) for c in granting if c.deleted}
        written = [c for c in granting if not c.deleted]
        if not written:
            return stale
        doc_ids = sorted({fga.document_id(c.relationship.object) for c in written})
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(queries.SELECT_DOCUMENT_ACLS, {"doc_ids": doc_ids})
                carried = {row["doc_id"]: set(row["acl"]) for row in await cur.fetchall()}
        except PsycopgError as exc:
            raise RetrievalUnavailableError("The document store is unavailable.") from exc
        for change in written:
            doc_id = fga.document_id(change.relationship.object)
            if doc_id in carried and change.relationship.user not in carried[doc_id]:
                stale.add(doc_id)
        return stale

    async def _load_cursor(self) -> str:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(queries.SELECT_SYNC_CURSOR, {"store_id": self._directory.store_id})
                row = await cur.fetchone()
        except PsycopgError as exc:
            raise RetrievalUnavailableError("The document store is unavailable.") from exc
        return str(row["continuation_token"]) if row else ""

    async def _save_cursor(self, cursor: str) -> None:
        try:
            async with self._pool.connection() as conn:
                await conn.execute(queries.UPSERT_SYNC_CURSOR, {"store_id": self._directory.store_id, "token": cursor})
        except PsycopgError as exc:
            raise RetrievalUnavailableError("The document store is unavailable.") from exc
