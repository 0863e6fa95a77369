"""Rows of the run queue written straight into Postgres, for tests below the run engine."""

from __future__ import annotations

import uuid

from psycopg.types.json import Jsonb

from mandate._db import Pool
from mandate.runtime import queries


async def insert_running_run(pool: Pool, *, assistant_id: str = "mandate", queue: str = "test") -> tuple[uuid.UUID, uuid.UUID]:
    """A thread of tenant ``acme`` and one run on it marked running (no replica holds its lease).

    Returns:
        ``(thread_id, run_id)``.
    """
    thread, run = uuid.uuid4(), uuid.uuid4()
    async with pool.connection() as conn:
        await conn.execute(
            queries.INSERT_THREAD, {"thread_id": thread, "tenant": "acme", "issuer": "i", "subject": "s", "metadata": Jsonb({})}
        )
        await conn.execute(
            queries.INSERT_QUEUED_RUN,
            {"run_id": run, "thread_id": thread, "assistant_id": assistant_id, "assistant_uuid": None, "metadata": Jsonb({}),
             "kwargs": Jsonb({}), "issuer": "i", "subject": "s", "temporary": False, "multitask_strategy": "reject",
             "webhook": None, "queue": queue},
        )
        await conn.execute("UPDATE mandate.runs SET status = 'running' WHERE run_id = %s", (run,))
    return thread, run


async def set_lease(pool: Pool, run: uuid.UUID, owner: str, left: str) -> None:
    """Lease the running ``run`` to ``owner`` until ``left`` (a Postgres interval, may be negative) from now."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE mandate.runs SET lease_owner = %s, lease_expires_at = now() + %s::interval WHERE run_id = %s",
            (owner, left, run),
        )
