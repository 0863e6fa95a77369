"""A run's checkpoint writes are fenced by its lease: a replica that lost the lease (taken over, or
expired while it stalled) writes nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import START, StateGraph
from psycopg.errors import UndefinedTable

from mandate._db import Pool, apply_migrations, open_pool
from mandate.runtime import queries
from mandate.runtime.errors import LeaseLostError
from mandate.runtime.fenced_saver import MAX_TRUST_SECONDS, LeaseFencedSaver
from mandate.runtime.run_execution import thread_config
from mandate.runtime.settings import Settings
from tests.utils.clock import FakeClock
from tests.utils.runs import insert_running_run, set_lease

OWNER = "replica-a"


class Counter(TypedDict):
    count: int


def _graph(saver: AsyncPostgresSaver) -> Any:
    graph = StateGraph(Counter)
    graph.add_node("add", lambda state: {"count": state["count"] + 1})
    graph.add_edge(START, "add")
    return graph.compile(checkpointer=saver)


@pytest.fixture()
async def pool(stack_settings: Settings) -> AsyncIterator[Pool]:
    opened = await open_pool(stack_settings.database_url, max_size=4)
    try:
        await apply_migrations(opened, room="service", migrations=queries.MIGRATIONS)
        await AsyncPostgresSaver(opened).setup()  # type: ignore[arg-type]
        yield opened
    finally:
        await opened.close()


async def _leased_run(pool: Pool) -> tuple[str, str]:
    """A thread and a run leased to :data:`OWNER` for a minute."""
    thread, run = await insert_running_run(pool, assistant_id="g")
    await set_lease(pool, run, OWNER, "1 minute")
    return str(thread), str(run)


async def _checkpoint_rows(pool: Pool, thread: str) -> tuple[int, int]:
    async with pool.connection() as conn:
        checkpoints = await (await conn.execute("SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", (thread,))).fetchone()
        writes = await (await conn.execute("SELECT count(*) AS n FROM checkpoint_writes WHERE thread_id = %s", (thread,))).fetchone()
    assert checkpoints is not None and writes is not None
    return int(checkpoints["n"]), int(writes["n"])


@asynccontextmanager
async def _runs_table_away(pool: Pool) -> AsyncIterator[None]:
    """``mandate.runs`` renamed for a while: any lease query meanwhile fails instead of answering."""
    async with pool.connection() as conn:
        await conn.execute("ALTER TABLE mandate.runs RENAME TO runs_away")
    try:
        yield
    finally:
        async with pool.connection() as conn:
            await conn.execute("ALTER TABLE mandate.runs_away RENAME TO runs")


@pytest.mark.parametrize(("owner", "left"), [("replica-b", "1 minute"), (OWNER, "-1 second")], ids=["taken-over", "expired"])
async def test_a_replica_that_lost_the_lease_in_a_stall_writes_nothing(pool: Pool, owner: str, left: str) -> None:
    thread, run = await _leased_run(pool)
    clock = FakeClock()
    saver = LeaseFencedSaver(pool, serde=JsonPlusSerializer(), run_id=run, owner=OWNER, clock=clock)
    graph = _graph(saver)
    assert await graph.ainvoke({"count": 0}, thread_config(thread)) == {"count": 1}
    written = await _checkpoint_rows(pool, thread)
    assert written[0] > 0

    clock.now += MAX_TRUST_SECONDS  # the stall outlasts what the last answer about the lease is trusted for
    await set_lease(pool, uuid.UUID(run), owner, left)
    with pytest.raises(LeaseLostError):
        await graph.ainvoke({"count": 5}, thread_config(thread), durability="sync")
    assert await _checkpoint_rows(pool, thread) == written
    assert (await graph.aget_state(thread_config(thread))).values == {"count": 1}


async def test_the_lease_is_asked_again_after_half_of_what_was_left(pool: Pool) -> None:
    thread, run = await _leased_run(pool)
    await set_lease(pool, uuid.UUID(run), OWNER, "1 second")
    clock = FakeClock()
    graph = _graph(LeaseFencedSaver(pool, serde=JsonPlusSerializer(), run_id=run, owner=OWNER, clock=clock))
    assert await graph.ainvoke({"count": 0}, thread_config(thread)) == {"count": 1}
    written = await _checkpoint_rows(pool, thread)

    clock.now += 0.5  # half of the second that was left: less than MAX_TRUST_SECONDS, and the answer is stale
    await set_lease(pool, uuid.UUID(run), OWNER, "-1 second")
    with pytest.raises(LeaseLostError):
        await graph.ainvoke({"count": 5}, thread_config(thread), durability="sync")
    assert await _checkpoint_rows(pool, thread) == written


async def test_one_answer_about_the_lease_serves_the_writes_of_a_short_run(pool: Pool) -> None:
    thread, run = await _leased_run(pool)
    clock = FakeClock()
    graph = _graph(LeaseFencedSaver(pool, serde=JsonPlusSerializer(), run_id=run, owner=OWNER, clock=clock))
    assert await graph.ainvoke({"count": 0}, thread_config(thread), durability="sync") == {"count": 1}
    written = await _checkpoint_rows(pool, thread)

    async with _runs_table_away(pool):
        for count in range(3):  # no lease query: the first answer still holds
            await graph.ainvoke({"count": count}, thread_config(thread), durability="sync")
        assert (await _checkpoint_rows(pool, thread))[0] > written[0]

        clock.now += MAX_TRUST_SECONDS  # past the trust: the next write asks, and the query fails
        with pytest.raises(UndefinedTable):
            await graph.ainvoke({"count": 9}, thread_config(thread), durability="sync")
