"""Group commit: callers that write to the same chain at the same time share one transaction.

Each caller still waits until its own record is committed (the write stays synchronous and
write-ahead); concurrent callers of one tenant are appended in order in a single transaction, so
the per-tenant lock and the commit's disk flush are paid once per batch instead of once per record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """Batches items per key and hands each batch, in arrival order, to ``write``."""

    def __init__(self, write: Callable[[list[Item]], Awaitable[list[Result]]], *, max_batch: int) -> None:
        """Hand batches to ``write``.

        Args:
            write: Writes one key's batch durably; returns one result per item, in order.
            max_batch: Most items written in one call.
        """
        self._write = write
        self._max_batch = max_batch
        self._pending: dict[str, list[tuple[Item, asyncio.Future[Result]]]] = {}
        self._drains: dict[str, asyncio.Task[None]] = {}

    async def submit(self, key: str, item: Item) -> Result:
        """Write ``item`` with the others of ``key`` and return its result once committed.

        Raises:
            Exception: Whatever ``write`` raised for the batch that held ``item``.
        """
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append((item, future))
        if key not in self._drains:
            self._drains[key] = asyncio.create_task(self._drain(key))
        return await future

    def _take(self, key: str) -> list[tuple[Item, asyncio.Future[Result]]]:
        pending = self._pending.get(key, [])
        batch, self._pending[key] = pending[: self._max_batch], pending[self._max_batch :]
        return batch

    async def _drain(self, key: str) -> None:
        try:
            while batch := self._take(key):
                await self._flush(batch)
        finally:
            del self._drains[key]
            for _, future in self._pending.pop(key, []):  # left only if the drain was cancelled
                future.cancel()

    async def _flush(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._write([item for item, _ in batch])
        except Exception as exc:  # every waiter of the batch gets the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
