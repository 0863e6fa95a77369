"""The queue worker of one replica: claims runs from Postgres, keeps their leases, drains on shutdown.

Every replica runs one worker (``MANDATE_RUN_WORKERS`` runs at a time; ``0`` makes an API-only
replica). A claim is one statement, ``FOR UPDATE … SKIP LOCKED`` on the run and its thread, so
concurrent workers never take the same run or two runs of one thread. A heartbeat renews the leases
of the runs this worker executes every third of the lease; when a lease cannot be renewed for most
of its length, the worker stops those runs itself before another replica may take them over, so a
run never executes in two places. A run whose replica died is claimed again once its lease expired
and continues from its last checkpoint; tool effects stay single through the call ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from psycopg import Error as PsycopgError

from mandate._db import Pool
from mandate.runtime import queries
from mandate.runtime.run_events import POLL_SECONDS, RunEventLog, RunNotifications

__all__ = ["RunLease", "RunWorker"]

_log = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 60.0

StopReason = Literal["cancel", "lost", "handback"]


@dataclass(kw_only=True, slots=True)
class RunLease:
    """This worker's hold on one claimed run (mutable: the worker records why it stopped the run)."""

    owner: str
    """The replica holding the lease (``lease_owner``)."""
    stop_reason: StopReason | None = None
    """Why the worker cancelled the run's task: a client cancelled it, the lease was lost, or the
    replica is shutting down and hands the run back. ``None`` while it runs."""


Execute = Callable[[dict[str, Any], RunLease], Awaitable[None]]


class RunWorker:
    """Claims and executes runs with ``execute(row, lease)`` until :meth:`stop`."""

    def __init__(
        self,
        *,
        pool: Pool,
        notifications: RunNotifications,
        events: RunEventLog,
        execute: Execute,
        owner: str,
        queue: str,
        concurrency: int,
        lease_seconds: float,
        event_retention_seconds: float,
    ) -> None:
        self._pool = pool
        self._notifications = notifications
        self._events = events
        self._execute = execute
        self._owner = owner
        self._queue = queue
        self._concurrency = concurrency
        self._lease_seconds = lease_seconds
        self._retention = event_retention_seconds
        self._running: dict[str, tuple[asyncio.Task[None], RunLease]] = {}
        self._slot_freed = asyncio.Event()
        self._draining = False
        self._loops: list[asyncio.Task[None]] = []
        notifications.on_cancel(lambda run_id: self._stop(run_id, "cancel"))

    @property
    def owner(self) -> str:
        """This replica's name in leases."""
        return self._owner

    @property
    def draining(self) -> bool:
        """Whether the worker stopped claiming (the replica is shutting down)."""
        return self._draining

    def start(self) -> None:
        """Start claiming (if this replica executes runs at all) and heartbeating."""
        if self._concurrency > 0:
            self._loops = [asyncio.create_task(self._claim_loop()), asyncio.create_task(self._heartbeat_loop())]

    def begin_drain(self) -> None:
        """Stop claiming new runs now (SIGTERM); runs already executing go on."""
        self._draining = True
        self._slot_freed.set()

    async def stop(self, *, grace: float) -> None:
        """Drain: stop claiming, let running runs finish for ``grace`` seconds, hand the rest back."""
        self.begin_drain()
        claim_loop = self._loops[0] if self._loops else None
        if claim_loop is not None:
            claim_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claim_loop
        tasks = [task for task, _ in self._running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        unfinished = {run_id: (task, lease) for run_id, (task, lease) in self._running.items() if not task.done()}
        for task, lease in unfinished.values():
            lease.stop_reason = "handback"
            task.cancel()
        if unfinished:
            await asyncio.wait([task for task, _ in unfinished.values()])
            await self._hand_back(list(unfinished))
        for loop in self._loops[1:]:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    async def _hand_back(self, run_ids: list[str]) -> None:
        """Expire the leases of runs this replica gives up, and wake the other replicas to take them."""
        try:
            async with self._pool.connection() as conn, conn.transaction():
                params = {"run_ids": [uuid.UUID(r) for r in run_ids], "owner": self._owner}
                await conn.execute(queries.HAND_BACK_RUNS, params)
                await conn.execute(queries.NOTIFY_RUNS, {"payload": "queued"})
        except PsycopgError:
            _log.warning("could not hand back %d runs; they are taken over when their leases expire", len(run_ids))

    async def _claim_loop(self) -> None:
        purged_at = 0.0
        while not self._draining:
            if len(self._running) >= self._concurrency:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                row = await self._claim()
                if time.monotonic() - purged_at > PURGE_EVERY_SECONDS:
                    purged_at = time.monotonic()
                    await self._events.purge(older_than=self._retention)
            except PsycopgError as exc:
                _log.warning("run queue: claim failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(POLL_SECONDS)
                continue
            if row is None:
                await self._notifications.queued(timeout=POLL_SECONDS)
                continue
            self._spawn(row)

    async def _claim(self) -> dict[str, Any] | None:
        if self._draining:
            return None
        async with self._pool.connection() as conn:
            params = {"owner": self._owner, "queue": self._queue, "lease": self._lease_seconds}
            return await (await conn.execute(queries.CLAIM_RUN, params)).fetchone()

    def _spawn(self, row: dict[str, Any]) -> None:
        run_id = str(row["run_id"])
        lease = RunLease(owner=self._owner)
        task = asyncio.create_task(self._execute(row, lease), name=f"run {run_id}")
        self._running[run_id] = (task, lease)

        def done(finished: asyncio.Task[None]) -> None:
            self._running.pop(run_id, None)
            self._slot_freed.set()
            if not finished.cancelled() and finished.exception() is not None:
                _log.error("run %s: the worker failed: %s", run_id, type(finished.exception()).__name__)

        task.add_done_callback(done)

    async def _heartbeat_loop(self) -> None:
        renewed_at = time.monotonic()
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            held = {run_id: lease for run_id, (_, lease) in self._running.items() if lease.stop_reason is None}
            if not held:
                renewed_at = time.monotonic()
                continue
            try:
                async with self._pool.connection() as conn:
                    params = {"run_ids": [uuid.UUID(r) for r in held], "owner": self._owner, "lease": self._lease_seconds}
                    rows = await (await conn.execute(queries.RENEW_LEASES, params)).fetchall()
            except PsycopgError as exc:
                if time.monotonic() - renewed_at > self._lease_seconds * 0.6:
                    _log.error("run queue: leases not renewed (%s); stopping this replica's runs", type(exc).__name__)
                    self._stop_all(held, "lost")
                continue
            renewed_at = time.monotonic()
            kept = {str(r["run_id"]): r["cancel_action"] for r in rows}
            for run_id in held:
                if run_id not in kept:
                    self._stop(run_id, "lost")
                elif kept[run_id]:
                    self._stop(run_id, "cancel")

    def _stop(self, run_id: str, reason: StopReason) -> None:
        held = self._running.get(run_id)
        if held is not None and held[1].stop_reason is None:
            held[1].stop_reason = reason
            held[0].cancel()

    def _stop_all(self, run_ids: dict[str, RunLease], reason: StopReason) -> None:
        for run_id in run_ids:
            self._stop(run_id, reason)
