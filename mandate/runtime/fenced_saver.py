"""A run's checkpointer that writes only while the run's lease is this replica's (a fencing check).

Leases make a run execute in one place, except for one window: a replica stalled past its lease
(a long GC pause, a starved event loop) wakes up still executing a run that another replica has
meanwhile claimed. Every checkpoint write of a run therefore first makes sure that this replica
still holds the run's lease; a replica that lost it stops at its next write instead of overwriting
the new owner's checkpoints. The check and the write are separate statements, so the window
shrinks to the time between them rather than closing.

The check asks the database only once in a while. A lease changes hands only once it has expired
by the database's clock (``CLAIM_RUN``), or when this replica gives it back after cancelling the
run's task; so when the database answers that the lease has ``R`` seconds left, nobody can take it
for ``R`` seconds after the question was asked. The saver trusts that answer for half of ``R`` and at
most :data:`MAX_TRUST_SECONDS`, on the monotonic clock, which also counts a stall: a replica that
wakes from a pause longer than that asks again before it writes. A run of a few hundred
milliseconds thus checks once instead of at each of its dozen writes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.base import SerializerProtocol

from mandate._db import Pool
from mandate.runtime import queries
from mandate.runtime.errors import LeaseLostError

__all__ = ["MAX_TRUST_SECONDS", "LeaseFencedSaver"]

MAX_TRUST_SECONDS = 2.0
"""The longest a database answer about the lease is relied on; it bounds what a clock that misses a
pause (a suspended virtual machine) could let through."""
TRUST_SHARE = 0.5
"""The share of the lease's remaining time an answer is relied on (the rest is margin for the clock)."""


class LeaseFencedSaver(AsyncPostgresSaver):
    """:class:`AsyncPostgresSaver` for one run that refuses to write once the run's lease is lost."""

    def __init__(
        self, pool: Pool, *, serde: SerializerProtocol, run_id: str, owner: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(pool, serde=serde)  # type: ignore[arg-type]
        self._pool = pool
        self._lease = {"run_id": uuid.UUID(run_id), "owner": owner}
        self._clock = clock
        self._trusted_until = float("-inf")

    async def _check_lease(self) -> None:
        if self._clock() < self._trusted_until:
            return
        asked = self._clock()
        async with self._pool.connection() as conn:
            held = await (await conn.execute(queries.LEASE_HELD, self._lease)).fetchone()
        if held is None:
            raise LeaseLostError("Another replica took this run over; this one stops writing it.")
        self._trusted_until = asked + min(float(held["remaining"]) * TRUST_SHARE, MAX_TRUST_SECONDS)

    async def aput(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions
    ) -> RunnableConfig:
        """Write a checkpoint, if the lease is still held."""
        await self._check_lease()
        return await super().aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """Write a task's pending writes, if the lease is still held."""
        await self._check_lease()
        await super().aput_writes(config, writes, task_id, task_path)
