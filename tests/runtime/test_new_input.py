"""New input on a thread whose last step was cut short: the requester is set from what LangGraph
keeps (the checkpoint's channels), not from the writes of tasks it discards on new input."""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import START, StateGraph

from mandate.auth import Principal
from mandate.contract import MandateState
from mandate.runtime.run_execution import thread_config, with_requester
from mandate.runtime.settings import Settings

ALICE = Principal(issuer="https://idp.example.com", issuer_key="idp", subject="alice", tenant="acme")


def _cut_short_graph() -> StateGraph[MandateState]:
    """``a`` and ``b`` run in one step: the first time, ``a`` writes the principal (as Mandate's input
    does) and ``b`` fails, so the step is cut short; after that both do nothing."""
    writes, failures = ["principal"], ["cut short"]

    async def a(state: MandateState) -> dict[str, Any]:
        return {"principal": ALICE.to_state()} if writes and writes.pop() else {}

    async def b(state: MandateState) -> dict[str, Any]:
        if failures:
            raise RuntimeError(failures.pop())
        return {}

    graph = StateGraph(MandateState)
    graph.add_node("a", a)
    graph.add_node("b", b)
    graph.add_edge(START, "a")
    graph.add_edge(START, "b")
    return graph


async def _principal_after_new_input(settings: Settings, *, seal_from_state: bool) -> Any:
    async with AsyncPostgresSaver.from_conn_string(settings.database_url) as saver:
        await saver.setup()
        graph = _cut_short_graph().compile(checkpointer=saver)
        thread = str(uuid.uuid4())
        config = thread_config(thread)
        try:
            await graph.ainvoke({"messages": [HumanMessage("first")]}, config)
        except RuntimeError:
            pass
        snapshot = await graph.aget_state(config)
        assert snapshot.values.get("principal") == ALICE.to_state()  # a's write shows in the state
        given: dict[str, Any] = {"messages": [HumanMessage("again")]}
        if not seal_from_state:
            given = await with_requester(saver, snapshot, given, ALICE)
        await graph.ainvoke(given, config)
        return (await graph.aget_state(config)).values.get("principal")


async def test_new_input_after_a_step_cut_short_carries_the_requester(stack_settings: Settings) -> None:
    assert await _principal_after_new_input(stack_settings, seal_from_state=False) == ALICE.to_state()


async def test_langgraph_drops_the_cut_short_steps_writes_on_new_input(stack_settings: Settings) -> None:
    # Why the requester is read from the checkpoint: judged from the state, the thread looked as if
    # it had one, and the new run ran without any.
    assert await _principal_after_new_input(stack_settings, seal_from_state=True) is None
