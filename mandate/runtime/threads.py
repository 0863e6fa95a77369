"""Thread ownership: a user sees and resumes only their own threads, within their tenant."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from mandate._db import Pool
from mandate.auth import Principal
from mandate.runtime import queries
from mandate.runtime.errors import (
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
        self,
        principal: Principal,
        *,
        status: str | None,
        metadata: dict[str, Any],
        limit: int,
        offset: int,
        ids: list[uuid.UUID] | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> list[dict[str, Any]]:
        """The caller's threads matching the filters; newest activity first unless told otherwise."""
        column = _ORDER_COLUMNS[sort_by or "updated_at"]
        direction = sql.SQL("ASC" if sort_order == "asc" else "DESC")
        order = sql.SQL("{column} {direction}, thread_id {direction}").format(column=column, direction=direction)
        query = sql.SQL(queries.SEARCH_OWNED_THREADS_SORTED).format(order=order)  # type: ignore[arg-type]
        params = {**_filters(principal, status, metadata, ids), "limit": limit, "offset": offset}
        async with self._pool.connection() as conn:
            return list(await (await conn.execute(query, params)).fetchall())

    async def count(self, principal: Principal, *, status: str | None, metadata: dict[str, Any]) -> int:
        """How many of the caller's threads match the filters."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(queries.COUNT_OWNED_THREADS_MATCHING, _filters(principal, status, metadata, None))
            row = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def remember_assistant(self, thread_id: str, assistant_uuid: str) -> None:
        """Record the assistant the thread's latest run named (a run that names none uses it again)."""
        params = {"thread_id": _uuid(thread_id), "assistant_uuid": uuid.UUID(assistant_uuid)}
        async with self._pool.connection() as conn:
            await conn.execute(queries.SET_THREAD_ASSISTANT, params)

    async def assistant_of(self, thread_id: str) -> tuple[str, str | None]:
        """The thread's tenant and the assistant its latest run named (``None`` before any).

        Raises:
            ThreadNotFoundError: No such thread.
        """
        async with self._pool.connection() as conn:
            row = await (await conn.execute(queries.SELECT_THREAD_ASSISTANT, {"thread_id": _uuid(thread_id)})).fetchone()
        if row is None:
            raise ThreadNotFoundError("Thread not found.")
        return str(row["tenant"]), str(row["assistant_uuid"]) if row["assistant_uuid"] else None

    async def metadata_of(self, thread_id: str) -> dict[str, Any]:
        """The thread's metadata (ownership is the caller's to have checked).

        Raises:
            ThreadNotFoundError: No such thread.
        """
        async with self._pool.connection() as conn:
            row = await (await conn.execute(queries.SELECT_THREAD_METADATA, {"thread_id": _uuid(thread_id)})).fetchone()
        if row is None:
            raise ThreadNotFoundError("Thread not found.")
        return dict(row["metadata"] or {})

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


_ORDER_COLUMNS = {
    "thread_id": sql.SQL("thread_id"),
    "status": sql.SQL("status"),
    "created_at": sql.SQL("created_at"),
    "updated_at": sql.SQL("updated_at"),
    "state_updated_at": sql.SQL("updated_at"),  # a thread's row changes with every run that writes its state
}


def _filters(principal: Principal, status: str | None, metadata: dict[str, Any], ids: list[uuid.UUID] | None) -> dict[str, Any]:
    return {
        "tenant": principal.tenant,
        "issuer": principal.issuer,
        "subject": principal.subject,
        "status": status,
        "metadata": Jsonb(metadata),
        "ids": ids,
    }


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
