"""The floor: the plain bench agent invoked in-process on a bare LangGraph ``AsyncPostgresSaver``.

No server, no HTTP, no controls: what the graph itself costs with Postgres checkpoints (LangGraph's
default durability), the model double on loopback as for the servers.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from bench.peers.double import QUESTION
from bench.peers.drive import RunOnce, check_answer


@asynccontextmanager
async def floor_runner(database_url: str, model_url: str, *, pool_size: int = 32) -> AsyncIterator[Callable[[], Any]]:
    """A factory of run functions invoking the plain graph in this process."""
    os.environ["OPENAI_BASE_URL"] = f"{model_url}/v1"
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-double")
    from examples.bench_agent.agent import make_plain_graph

    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(database_url, min_size=2, max_size=pool_size, kwargs=kwargs, open=False) as pool:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        graph = make_plain_graph().copy(update={"checkpointer": saver})

        def new_client() -> tuple[Any, RunOnce]:
            async def run_once(amount: int) -> float:
                config = {"configurable": {"thread_id": str(uuid.uuid4())}}
                began = time.perf_counter()
                values = await graph.ainvoke({"messages": [HumanMessage(QUESTION.format(amount=amount))]}, config)
                seconds = time.perf_counter() - began
                check_answer({"messages": [{"content": values["messages"][-1].content}]}, amount)
                return seconds

            async def close() -> None:
                pass

            return close, run_once

        yield new_client
