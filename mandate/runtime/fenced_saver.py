"""A run's checkpointer that writes only while the run's lease is this replica's (a fencing check).

Leases make a run execute in one place, except for one window: a replica stalled past its lease
(a long GC pause, a starved event loop) wakes up still executing a run that another replica has
meanwhile claimed. Every checkpoint write of a run therefore first checks, in the database, that
this replica still holds the run's lease; a replica that lost it stops at its next write instead of
overwriting the new owner's checkpoints. The check and the write are separate statements, so the
window shrinks to the time between them rather than closing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.base import SerializerProtocol

from mandate._db import Pool
from mandate.runtime import queries
from mandate.runtime.errors import LeaseLostError

__all__ = ["LeaseFencedSaver"]


class LeaseFencedSaver(AsyncPostgresSaver):
    """:class:`AsyncPostgresSaver` for one run that refuses to write once the run's lease is lost."""

    def __init__(self, pool: Pool, *, serde: SerializerProtocol, run_id: str, owner: str) -> None:
        super().__init__(pool, serde=serde)  # type: ignore[arg-type]
        self._pool = pool
        self._lease = {"run_id": uuid.UUID(run_id), "owner": owner}

    async def _check_lease(self) -> None:
        async with self._pool.connection() as conn:
            held = await (await conn.execute(queries.LEASE_HELD, self._lease)).fetchone()
        if held is None:
            raise LeaseLostError("Another replica took this run over; this one stops writing it.")

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
