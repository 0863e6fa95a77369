"""Database plumbing shared by the rooms: the pool alias and numbered, per-room migrations."""

from __future__ import annotations

import select
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

__all__ = ["Pool", "apply_migrations", "open_pool"]

Pool = AsyncConnectionPool
"""The one pool type every room accepts (autocommit, dict rows, no server-side prepares)."""

_CREATE_LEDGER = """
CREATE SCHEMA IF NOT EXISTS mandate;
CREATE TABLE IF NOT EXISTS mandate.migrations (
    room text NOT NULL,
    version int NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room, version)
);
"""


async def _configure(conn: AsyncConnection) -> None:
    from pgvector.psycopg import register_vector_async

    await register_vector_async(conn)


async def check_if_the_server_spoke(conn: AsyncConnection[Any]) -> None:
    """The pool's check of a connection leaving it, without a round trip while the server is silent.

    An idle connection's socket has nothing to read unless the server closed it (a restart, an
    administrator's terminate) or sent a notice; only then is it checked with a query, and replaced
    if that fails. A round trip on every checkout cost a sixth of a run's CPU.
    """
    if conn.closed or conn.broken or _readable(conn.pgconn.socket):
        await AsyncConnectionPool.check_connection(conn)


def _readable(fd: int) -> bool:
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


async def open_pool(dsn: str, *, max_size: int = 10) -> AsyncConnectionPool:
    """Open the shared pool; the ``vector`` extension must exist first (see :func:`apply_migrations`).

    The kwargs are the ones ``langgraph-checkpoint-postgres`` requires of a shared pool.
    """
    async with await AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    pool = AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=max_size,
        open=False,
        configure=_configure,
        # A connection is checked as it leaves the pool: after Postgres restarts, the pool's old
        # connections are replaced instead of failing one request each.
        check=check_if_the_server_spoke,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    await pool.open(wait=True)
    return pool


async def apply_migrations(pool: AsyncConnectionPool, *, room: str, migrations: Sequence[str]) -> None:
    """Apply the not yet applied ``migrations`` of ``room`` in order; index + 1 is the version.

    A transaction-scoped advisory lock makes concurrent starts safe.
    """
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(_CREATE_LEDGER, prepare=False)
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('mandate.migrations'))")
        cur = await conn.execute("SELECT coalesce(max(version), 0) AS v FROM mandate.migrations WHERE room = %s", (room,))
        row = await cur.fetchone()
        current = int(row["v"]) if row else 0
        for version, sql in enumerate(migrations, start=1):
            if version <= current:
                continue
            await conn.execute(sql, prepare=False)
            await conn.execute("INSERT INTO mandate.migrations (room, version) VALUES (%s, %s)", (room, version))
