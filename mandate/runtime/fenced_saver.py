"""A run's checkpointer that writes only while the run's lease is this replica's (a fencing check).

Leases make a run execute in one place, except for one window: a replica stalled past its lease
(a long GC pause, a starved event loop) wakes up still executing a run that another replica has
meanwhile claimed. Every checkpoint write of a run therefore holds the run's lease in the write's
own transaction (``mandate.hold_run_lease`` share-locks the run's row or fails): a replica that lost
the lease writes nothing and stops, and no replica can claim the run between the check and the write.
The check rides in the write's pipeline, so it costs no round trip of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg import AsyncCursor
from psycopg import Error as PsycopgError
from psycopg.rows import DictRow, dict_row

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

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        """The saver's cursor; its writes (``pipeline=True``: checkpoints, task writes, deletes) run
        in one transaction that first holds the run's lease.

        Raises:
            LeaseLostError: This replica no longer holds the run's lease; nothing was written.
        """
        if not pipeline:  # reads
            async with super()._cursor() as cur:
                yield cur
            return
        async with self.lock, self._pool.connection() as conn:
            try:
                async with conn.pipeline(), conn.transaction(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    await cur.execute(queries.HOLD_RUN_LEASE, self._lease)
                    yield cur
            except PsycopgError as exc:
                if exc.sqlstate == queries.LEASE_LOST_SQLSTATE:
                    raise LeaseLostError("Another replica took this run over; this one stops writing it.") from None
                raise
