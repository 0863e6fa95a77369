"""Thread ownership: a user sees and resumes only their own threads, within their tenant."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.types.json import Jsonb

from mandate._db import Pool
from mandate.auth import Principal
from mandate.service import queries
from mandate.service.errors import (
    InvalidRunError,
    ThreadBoundError,
    ThreadBusyError,
    ThreadExistsError,
    ThreadNotFoundError,
    ThreadQuotaError,
)

__all__ = ["ThreadStore"]


class ThreadStore:
    """Rows of ``mandate.threads``; every read is filtered by the caller's identity."""

    def __init__(self, *, pool: Pool, max_per_user: int) -> None:
        self._pool = pool
        self._max_per_user = max_per_user

    async def create(self, principal: Principal, *, thread_id: str | None, metadata: dict[str, Any]) -> dict[str, Any]:
        """Create a thread owned by ``principal``.

        Raises:
            ThreadExistsError: The id is taken.
            ThreadQuotaError: ``principal`` already owns the most threads one user may keep.
        """
        try:
            key = uuid.UUID(thread_id) if thread_id else uuid.uuid4()
        except ValueError:
            raise InvalidRunError("thread_id must be a UUID.") from None
        params = {
            "thread_id": key,
            "tenant": principal.tenant,
            "issuer": principal.issuer,
            "subject": principal.subject,
            "metadata": Jsonb(metadata),
        }
        async with self._pool.connection() as conn:
            owned = await (await conn.execute(queries.COUNT_OWNED_THREADS, params)).fetchone()
            if owned is not None and owned["n"] >= self._max_per_user:
                raise ThreadQuotaError(f"You already keep {self._max_per_user} threads; delete some first.")
            row = await (await conn.execute(queries.INSERT_THREAD, params)).fetchone()
        if row is None:
            raise ThreadExistsError("A thread with this id already exists.")
        return row

    async def get(self, principal: Principal, thread_id: str) -> dict[str, Any]:
        """The thread, if ``principal`` owns it.

        Raises:
            ThreadNotFoundError: No such thread, or not theirs.
        """
        async with self._pool.connection() as conn:
            row = await (await conn.execute(queries.SELECT_OWNED_THREAD, _owner(principal, thread_id))).fetchone()
        if row is None:
            raise ThreadNotFoundError("Thread not found.")
        return row

    async def search(
        self, principal: Principal, *, status: str | None, metadata: dict[str, Any], limit: int, offset: int
    ) -> list[dict[str, Any]]:
        """The caller's threads, newest first."""
        params = {
            "tenant": principal.tenant,
            "issuer": principal.issuer,
            "subject": principal.subject,
            "status": status,
            "metadata": Jsonb(metadata),
            "limit": limit,
            "offset": offset,
        }
        async with self._pool.connection() as conn:
            return list(await (await conn.execute(queries.SEARCH_OWNED_THREADS, params)).fetchall())

    async def bind(self, thread_id: str, graph_id: str | None, *, default: str) -> str:
        """Bind the thread to the graph of its first run and return the thread's graph.

        Args:
            thread_id: The thread.
            graph_id: The graph the run asks for; ``None`` means the thread's own (or ``default``).
            default: The graph of a thread whose first run names none.

        Raises:
            ThreadBoundError: The thread already runs another graph.
        """
        params = {"thread_id": _uuid(thread_id), "assistant_id": graph_id or default}
        async with self._pool.connection() as conn:
            row = await (await conn.execute(queries.BIND_THREAD_ASSISTANT, params)).fetchone()
        if row is None:
            raise ThreadNotFoundError("Thread not found.")
        if graph_id is not None and row["assistant_id"] != graph_id:
            raise ThreadBoundError(f"This thread runs assistant {row['assistant_id']!r}.")
        return str(row["assistant_id"])

    async def claim(self, thread_id: str) -> str | None:
        """Mark the thread busy for one run; returns the W3C traceparent of the run it paused in, if any.

        Raises:
            ThreadBusyError: Another run holds it.
        """
        async with self._pool.connection() as conn:
            row = await (await conn.execute(queries.CLAIM_THREAD_FOR_RUN, {"thread_id": _uuid(thread_id)})).fetchone()
        if row is None:
            raise ThreadBusyError("A run is already in progress on this thread.")
        return row["traceparent"]

    async def release(self, thread_id: str, status: str, *, traceparent: str | None = None) -> None:
        """Record how the run left the thread (``idle``, ``interrupted`` or ``error``) and, if paused, its trace."""
        params = {"thread_id": _uuid(thread_id), "status": status, "traceparent": traceparent}
        async with self._pool.connection() as conn:
            await conn.execute(queries.SET_THREAD_STATUS, params)

    async def delete(self, principal: Principal, thread_id: str) -> None:
        """Delete the caller's thread row (checkpoints are deleted by the caller)."""
        await self.get(principal, thread_id)
        async with self._pool.connection() as conn:
            await conn.execute(queries.DELETE_THREAD, {"thread_id": _uuid(thread_id)})


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ThreadNotFoundError("Thread not found.") from None


def _owner(principal: Principal, thread_id: str) -> dict[str, Any]:
    return {
        "thread_id": _uuid(thread_id),
        "tenant": principal.tenant,
        "issuer": principal.issuer,
        "subject": principal.subject,
    }
