"""Follows OpenFGA's change log before every query, so materialised ACL state is never behind it.

Two things are kept outside OpenFGA for speed: each chunk's ACL tokens in Postgres (what its
document's own tuples name, see ``_acl``) and, per process, the principal closure of each (user,
agent, tenant) (see ``_principals``). Both are exact only if no change logged in OpenFGA has been
missed. :meth:`ChangeFeed.sync` reads the log (every object type) from the last position this
process applied, and before it returns:

- every document whose granting tuples changed (a deletion, a grant its tokens do not carry yet, a
  tenant tuple) gets its tokens rewritten from its current tuples, under a row lock (idempotent and
  order-independent, so any replica may do it any number of times);
- every listener (the principal cache) is told, and drops what the changes may touch.

A query calls :meth:`sync` with the moment it started; a sync whose first read was sent after that
moment serves every query waiting for it, so concurrent queries share one read. A query therefore
sees every change OpenFGA logged before it started: a revocation takes effect on the next query.

The log is ordered by OpenFGA's ids, which are taken before a write commits, so two concurrent
writes may appear out of order. Each sync therefore reads from ``window_s`` before its previous read
began and skips what it already applied: a change logged before that had committed when the
previous read began, so that read saw it. A write that takes less than ``window_s`` to commit
(OpenFGA's own request deadline is far shorter), on clocks less than that apart, is never missed.
With nothing written in the last ``window_s``, a sync is one ReadChanges call that finds nothing.
OpenFGA must show changes at once (``--changelog-horizon-offset`` 0, its default): an offset hides
the newest changes from ReadChanges, and with them revocations, for that long.

The position (every change logged before it is applied) is the consistency token. It is kept in
Postgres whenever a sync applied something, for a cold start: a process that starts reads from
there. A position older than the truth only costs a replay; one in the future (forged, or from
another clock) would skip changes, so it is refused with ``acl_feed_position_invalid`` and nothing
is retrieved until an operator resets it (:meth:`ChangeFeed.reset_position`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg import Error as PsycopgError

from mandate._db import Pool
from mandate.auth import vocabulary as fga
from mandate.retrieval import queries
from mandate.retrieval._acl import GRANTING_RELATIONS, synced_acl
from mandate.retrieval.directory import PAGE_SIZE, RelationshipDirectory, TupleChange
from mandate.retrieval.errors import FeedPositionError, RetrievalUnavailableError

__all__ = ["FEED_WINDOW_S", "ChangeFeed", "FeedReport"]

FEED_WINDOW_S = 10.0
"""How far back each sync reads again (see the module docstring)."""
RECONCILE_CONCURRENCY = 4
"""Documents reconciled at once (each holds a pooled connection while it reads OpenFGA)."""
DOCUMENT_RELATIONS = GRANTING_RELATIONS | {"tenant"}
"""Relations of a document its stored tokens depend on."""

Listener = Callable[[list[TupleChange]], None]
_Key = tuple[datetime | None, bool, str, str, str]


@dataclass(frozen=True, kw_only=True, slots=True)
class FeedReport:
    """What one :meth:`ChangeFeed.sync` did for its caller."""

    changes: int
    """New changes applied (0 when the log had nothing new, or another query's sync was shared)."""
    documents: int
    """Documents whose tokens were rewritten from OpenFGA."""
    fga_calls: int
    sql_round_trips: int
    shared: bool = False
    """Whether a sync started by another query after this one began served it."""


def _key(change: TupleChange) -> _Key:
    r = change.relationship
    return (change.timestamp, change.deleted, r.user, r.relation, r.object)


class ChangeFeed:
    """Applies OpenFGA's change log to the document tokens and tells listeners (one per process)."""

    def __init__(self, *, pool: Pool, directory: RelationshipDirectory, window_s: float = FEED_WINDOW_S) -> None:
        self._pool = pool
        self._directory = directory
        self._window = timedelta(seconds=window_s)
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()
        self._loaded = False
        self._position: datetime | None = None
        """Every change logged before this time is applied; ``None``: none yet (read from the beginning)."""
        self._seen: dict[_Key, datetime | None] = {}
        """Changes applied within the window before :attr:`_position` (they are read again)."""
        self._seen_order: deque[_Key] = deque()
        self._synced_since = -float("inf")
        """Monotonic time at which the last successful sync sent its first read."""
        self._applying = False
        self.generation = 0
        """Moves when changes start and finish being applied."""

    def idle_generation(self) -> int | None:
        """The generation, or ``None`` while changes are being applied (see :meth:`_apply`)."""
        return None if self._applying else self.generation

    @property
    def position(self) -> datetime | None:
        """The consistency token: every change logged before it is applied (``None`` before the first sync)."""
        return self._position

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every batch of new changes, before the sync that found them returns."""
        self._listeners.append(listener)

    async def sync(self, *, since: float | None = None) -> FeedReport:
        """Apply every change OpenFGA logged before the monotonic time ``since`` (default: now).

        Raises:
            AuthorizationUnavailableError: OpenFGA erred (nothing is marked applied).
            RetrievalUnavailableError: The database erred.
            FeedPositionError: The stored position lies in the future.
        """
        since = time.monotonic() if since is None else since
        async with self._lock:
            if self._synced_since >= since:
                return FeedReport(changes=0, documents=0, fga_calls=0, sql_round_trips=0, shared=True)
            started = time.monotonic()
            report = await self._sync()
            self._synced_since = started
            return report

    async def reset_position(self, position: datetime | None) -> None:
        """Store ``position`` as the applied position (operators: after a refused one; ``None`` replays all).

        Raises:
            RetrievalUnavailableError: The database erred.
        """
        try:
            async with self._pool.connection() as conn:
                await conn.execute(
                    queries.RESET_FEED_POSITION, {"store_id": self._directory.store_id, "position": position}
                )
        except PsycopgError as exc:
            raise RetrievalUnavailableError("The document store is unavailable.") from exc
        async with self._lock:
            self._loaded, self._position, self._synced_since = False, None, -float("inf")
            self._seen, self._seen_order = {}, deque()
            self.generation += 1

    async def _sync(self) -> FeedReport:
        sql_round_trips = fga_calls = applied = documents = 0
        if not self._loaded:
            self._position = await self._load_position()
            self._loaded = True
            sql_round_trips += 1
        read_at = datetime.now(UTC)
        cursor = ""
        while True:
            changes, next_cursor = await self._directory.read_changes(
                object_type=None, cursor=cursor, start_time=self._position
            )
            fga_calls += 1
            fresh = list({_key(c): c for c in changes if _key(c) not in self._seen}.values())
            if fresh:  # applied page by page, in log order: a long replay never holds the whole log
                reconciled, trips = await self._apply(fresh)
                applied, documents = applied + len(fresh), documents + reconciled
                fga_calls, sql_round_trips = fga_calls + reconciled, sql_round_trips + trips
            if len(changes) < PAGE_SIZE or not next_cursor or next_cursor == cursor:
                break
            cursor = next_cursor
        # Everything logged before read_at - window had committed when this read began, so it was seen.
        horizon = read_at - self._window
        if self._position is None or horizon > self._position:
            self._position = horizon
            self._forget_before(horizon)
            if applied:
                await self._save_position(horizon)
                sql_round_trips += 1
        return FeedReport(changes=applied, documents=documents, fga_calls=fga_calls, sql_round_trips=sql_round_trips)

    async def _apply(self, new: list[TupleChange]) -> tuple[int, int]:
        """Tell listeners and rewrite stale documents; (documents, SQL round trips).

        The generation moves when applying begins and again when it ends, so a reader that saw the
        same idle generation before and after its own work knows no application overlapped it.
        """
        self.generation += 1
        self._applying = True
        try:
            for listener in self._listeners:  # dropping cached state is harmless to repeat, so it comes first
                listener(new)
            stale, sql_round_trips = await self._stale_documents(new)
            semaphore = asyncio.Semaphore(RECONCILE_CONCURRENCY)

            async def reconcile(doc_id: str) -> None:
                async with semaphore:
                    await self.reconcile(doc_id)

            await asyncio.gather(*(reconcile(doc_id) for doc_id in sorted(stale)))
        finally:
            self._applying = False
            self.generation += 1
        for change in new:
            self._seen[_key(change)] = change.timestamp
            self._seen_order.append(_key(change))
        return len(stale), sql_round_trips + len(stale)

    def _forget_before(self, horizon: datetime) -> None:
        """Forget applied changes older than ``horizon``: they are not read again (the log is in time order)."""
        while self._seen_order:
            oldest = self._seen_order[0]
            stamp = self._seen.get(oldest, horizon - self._window)
            if stamp is not None and stamp >= horizon:
                break
            self._seen_order.popleft()
            self._seen.pop(oldest, None)

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
                acl = list(synced_acl(await self._directory.read(fga.document(doc_id)), tenant=str(row["tenant"])))
                if acl != row["acl"]:
                    await conn.execute(queries.UPDATE_DOCUMENT_ACL, {"doc_id": doc_id, "acl": acl})
                    await conn.execute(queries.UPDATE_CHUNKS_ACL, {"doc_id": doc_id, "acl": acl})
        except PsycopgError as exc:
            raise RetrievalUnavailableError("The document store is unavailable.") from exc

    async def _stale_documents(self, changes: list[TupleChange]) -> tuple[set[str], int]:
        """Documents whose tokens these changes may have made wrong, and the SQL round trips spent."""
        relevant = [
            c for c in changes
            if c.relationship.object.startswith("document:") and c.relationship.relation in DOCUMENT_RELATIONS
        ]
        stale = {fga.document_id(c.relationship.object) for c in relevant if c.deleted}
        written = [c for c in relevant if not c.deleted]
        if not written:
            return stale, 0
        doc_ids = sorted({fga.document_id(c.relationship.object) for c in written})
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(queries.SELECT_DOCUMENT_ACLS, {"doc_ids": doc_ids})
                stored = {row["doc_id"]: (str(row["tenant"]), set(row["acl"])) for row in await cur.fetchall()}
        except PsycopgError as exc:
            raise RetrievalUnavailableError("The document store is unavailable.") from exc
        for change in written:
            doc_id = fga.document_id(change.relationship.object)
            if doc_id not in stored:
                continue  # not ingested (yet): ingestion writes its tokens with its rows
            tenant, acl = stored[doc_id]
            r = change.relationship
            carried = r.user == fga.tenant(tenant) if r.relation == "tenant" else r.user in acl
            if not carried:
                stale.add(doc_id)
        return stale, 1

    async def _load_position(self) -> datetime | None:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(queries.SELECT_FEED_POSITION, {"store_id": self._directory.store_id})
                row = await cur.fetchone()
        except PsycopgError as exc:
            raise RetrievalUnavailableError("The document store is unavailable.") from exc
        if row is None:
            return None
        if row["from_future"]:
            raise FeedPositionError(
                "The stored position of OpenFGA's change log lies in the future; nothing is retrieved until "
                "it is reset (mandate.acl_sync_cursors)."
            )
        position = row["applied_through"]
        return position if isinstance(position, datetime) else None

    async def _save_position(self, position: datetime) -> None:
        try:
            async with self._pool.connection() as conn:
                await conn.execute(queries.UPSERT_FEED_POSITION, {"store_id": self._directory.store_id, "position": position})
        except PsycopgError as exc:
            raise RetrievalUnavailableError("The document store is unavailable.") from exc
