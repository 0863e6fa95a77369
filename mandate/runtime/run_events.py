"""A run's events as an ordered log in Postgres, and the wake-ups that tell every replica about them.

Why a stored log rather than LISTEN/NOTIFY alone: a client that reconnects (``Last-Event-ID``), or
joins from another replica, or waits while the replica executing its run dies, must still get every
event in order; a notification is lost to a replica that was not listening. So each event is a row
``(run_id, seq)``, and NOTIFY only wakes readers (``event <run_id>``), workers (``queued``) and the
replica executing a run (``cancel <run_id>``). A reader that misses a notification finds the rows at
its next poll (every :data:`POLL_SECONDS`), so wake-ups shorten waits but never decide correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from psycopg import Error as PsycopgError

from mandate._db import Pool
from mandate.runtime import queries
from mandate.runtime.errors import LeaseLostError

__all__ = ["POLL_SECONDS", "RunNotifications", "RunEventLog", "StoredEvent"]

_log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
"""Longest a reader or an idle worker waits without a notification before it looks again."""
TERMINAL_EVENTS = ("end", "error")


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredEvent:
    """One event of a run's log."""

    seq: int
    """Its place in the run's log, from 1 (the SSE ``id``)."""
    event: str
    """``metadata``, a stream mode (``values``, ``updates|subgraph`` …), ``events``, ``end`` or ``error``."""
    data: Any
    result: dict[str, Any] | None = field(default=None, repr=False)
    """On ``end`` only, never streamed: the thread's values as the run left them (``/runs/wait``'s answer)."""

    @property
    def terminal(self) -> bool:
        """Whether the run ends with this event."""
        return self.event in TERMINAL_EVENTS


class RunNotifications:
    """One LISTEN connection per replica; hands each notification to whoever waits on it in this process."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._readers: dict[str, set[asyncio.Event]] = {}
        self._queued = asyncio.Event()
        self._cancel_handlers: list[Callable[[str], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self) -> None:
        """Connect and LISTEN (reconnecting in the background if the connection drops)."""
        self._task = asyncio.create_task(self._listen_forever())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout=10)

    async def close(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def on_cancel(self, handler: Callable[[str], None]) -> None:
        """Call ``handler(run_id)`` when any replica asks to cancel a run."""
        self._cancel_handlers.append(handler)

    def dispatch(self, payload: str) -> None:
        """Deliver one notification in this process (also used for this replica's own events)."""
        kind, _, run_id = payload.partition(" ")
        if kind == "event":
            for waiter in self._readers.get(run_id, ()):
                waiter.set()
        elif kind == "queued":
            self._queued.set()
        elif kind == "cancel":
            for handler in self._cancel_handlers:
                handler(run_id)

    async def queued(self, timeout: float) -> None:
        """Return when a run was queued (anywhere), or after ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queued.wait(), timeout=timeout)
        self._queued.clear()

    @contextlib.contextmanager
    def reader(self, run_id: str) -> Any:
        """An :class:`asyncio.Event` set whenever ``run_id`` gets new events, while the block runs."""
        waiter = asyncio.Event()
        self._readers.setdefault(run_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._readers.get(run_id, set())
            waiters.discard(waiter)
            if not waiters:
                self._readers.pop(run_id, None)

    async def _listen_forever(self) -> None:
        while True:
            try:
                async with await AsyncConnection.connect(self._dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {queries.RUN_NOTIFY_CHANNEL}")
                    self._listening.set()
                    self._queued.set()  # anything queued while we were not listening
                    async for notify in conn.notifies():
                        self.dispatch(notify.payload)
            except asyncio.CancelledError:
                raise
            except (PsycopgError, OSError) as exc:
                _log.warning("run notifications: connection lost (%s); polling until it is back", type(exc).__name__)
                await asyncio.sleep(POLL_SECONDS)


class RunEventLog:
    """Append to and read from ``mandate.run_events``."""

    def __init__(self, *, pool: Pool, notifications: RunNotifications) -> None:
        self._pool = pool
        self._notifications = notifications

    async def append(
        self, run_id: str, thread_id: str, event: str, data: Any, *, result: dict[str, Any] | None = None,
        owner: str | None = None,
    ) -> StoredEvent:
        """Append one event (its ``seq`` is the next of the run's) and wake its readers everywhere.

        Raises:
            LeaseLostError: ``owner`` is given and no longer holds the run's lease.
        """
        params = {
            "owner": owner,
            "run_id": uuid.UUID(run_id),
            "thread_id": uuid.UUID(thread_id),
            "event": event,
            "data": json.dumps(data, default=str),
            "result": json.dumps(result, default=str) if result is not None else None,
        }
        async with self._pool.connection() as conn:
            row = await (await conn.execute(queries.APPEND_RUN_EVENT, params)).fetchone()
        if row is None:
            raise LeaseLostError("Another replica took this run over; this one stops streaming it.")
        self._notifications.dispatch(f"event {run_id}")  # readers in this process need not wait for the echo
        return StoredEvent(seq=int(row["seq"]), event=event, data=data, result=result)

    async def read(self, run_id: str, thread_id: str, *, after: int) -> list[StoredEvent]:
        """The run's events after ``after``, in order (at most a page)."""
        params = {"run_id": uuid.UUID(run_id), "thread_id": uuid.UUID(thread_id), "after": after}
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(queries.TAIL_RUN_EVENTS, params)).fetchall()
        return [
            StoredEvent(
                seq=int(r["seq"]),
                event=r["event"],
                data=json.loads(r["data"]),
                result=json.loads(r["result"]) if r["result"] is not None else None,
            )
            for r in rows
        ]

    async def follow(
        self, run_id: str, thread_id: str, *, after: int, idle: Callable[[], Any]
    ) -> AsyncIterator[StoredEvent]:
        """The run's events after ``after`` as they are appended, until its ``end`` or ``error``.

        ``idle()`` is awaited whenever no event came for :data:`POLL_SECONDS`; it may return a final
        event (the run ended without one in the log, e.g. it was deleted) or raise to stop following.
        """
        with self._notifications.reader(run_id) as woken:
            while True:
                woken.clear()
                events = await self.read(run_id, thread_id, after=after)
                for event in events:
                    after = event.seq
                    yield event
                    if event.terminal:
                        return
                if events:
                    continue
                try:
                    await asyncio.wait_for(woken.wait(), timeout=POLL_SECONDS)
                except TimeoutError:
                    final = await idle()
                    if final is not None and final.seq > after:
                        continue  # the log ends after events not read yet (their wake-ups were lost): read them
                    if final is not None:
                        yield final
                        return

    async def purge(self, *, older_than: float) -> None:
        """Delete events older than ``older_than`` seconds."""
        async with self._pool.connection() as conn:
            await conn.execute(queries.PURGE_RUN_EVENTS, {"age": older_than})
