"""Double texting with the official ``langgraph-sdk``: ``multitask_strategy`` reject, enqueue,
interrupt and rollback with the LangGraph server's semantics, the two runs created on different replicas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError, NotFoundError

from tests.replicas.conftest import SLOW, Replicas
from tests.utils.threads import bearer
from tests.utils.tokens import login

SLOW_QUESTION = f"What does the contract say? {SLOW}"
FOLLOW_UP = "What is on the roadmap?"


def _user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture()
async def sdks(replicas: Replicas) -> AsyncIterator[list[Any]]:
    """alice's SDK client on each of two replicas."""
    headers = bearer(login(replicas.public_url, "alice"))
    async with get_client(url=replicas.urls[0], api_key=None, headers=headers) as first, get_client(
        url=replicas.urls[1], api_key=None, headers=headers
    ) as second:
        yield [first, second]


async def _running(client: Any, thread_id: str, run_id: str) -> None:
    for _ in range(600):  # bounded polling; no timing is asserted
        if (await client.runs.get(thread_id, run_id))["status"] == "running":
            return
        await __import__("asyncio").sleep(0.02)
    raise AssertionError("the first run never started")


async def _two_runs(sdks: list[Any], strategy: str | None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    one, two = sdks
    thread = (await one.threads.create())["thread_id"]
    first = await one.runs.create(thread, "mandate", input=_user(SLOW_QUESTION))
    await _running(one, thread, first["run_id"])
    options = {"multitask_strategy": strategy} if strategy else {}
    second = await two.runs.create(thread, "mandate", input=_user(FOLLOW_UP), **options)
    return thread, first, second


async def test_reject_is_the_default_and_answers_409(sdks: list[Any]) -> None:
    with pytest.raises(ConflictError) as refused:
        await _two_runs(sdks, None)
    assert refused.value.code == "thread_busy"
    with pytest.raises(ConflictError):
        await _two_runs(sdks, "reject")


async def test_enqueue_runs_the_second_after_the_first(sdks: list[Any]) -> None:
    one, two = sdks
    thread, first, second = await _two_runs(sdks, "enqueue")
    assert second["multitask_strategy"] == "enqueue" and second["status"] == "pending"
    values = await two.runs.join(thread, second["run_id"])
    assert (await one.runs.get(thread, first["run_id"]))["status"] == "success"
    assert (await one.runs.get(thread, second["run_id"]))["status"] == "success"
    questions = [m["content"] for m in values["messages"] if m["type"] == "human"]
    assert questions == [SLOW_QUESTION, FOLLOW_UP]


async def test_interrupt_stops_the_first_and_keeps_its_checkpoints(sdks: list[Any]) -> None:
    one, two = sdks
    thread, first, second = await _two_runs(sdks, "interrupt")
    values = await two.runs.join(thread, second["run_id"])
    assert (await one.runs.get(thread, first["run_id"]))["status"] == "interrupted"
    assert (await one.runs.get(thread, second["run_id"]))["status"] == "success"
    history = await one.threads.get_history(thread, limit=100)
    assert first["run_id"] in {s["metadata"].get("run_id") for s in history}
    assert [m["content"] for m in values["messages"] if m["type"] == "human"][-1] == FOLLOW_UP


async def test_rollback_deletes_the_first_run_and_its_checkpoints(sdks: list[Any]) -> None:
    one, two = sdks
    thread, first, second = await _two_runs(sdks, "rollback")
    values = await two.runs.join(thread, second["run_id"])
    with pytest.raises(NotFoundError):
        await one.runs.get(thread, first["run_id"])
    assert (await one.runs.get(thread, second["run_id"]))["status"] == "success"
    history = await one.threads.get_history(thread, limit=100)
    assert first["run_id"] not in {s["metadata"].get("run_id") for s in history}
    assert [m["content"] for m in values["messages"] if m["type"] == "human"] == [FOLLOW_UP]


async def test_another_users_strategy_touches_nothing_of_the_thread(sdks: list[Any], replicas: Replicas) -> None:
    one, _ = sdks
    thread = (await one.threads.create())["thread_id"]
    first = await one.runs.create(thread, "mandate", input=_user(SLOW_QUESTION))
    async with get_client(url=replicas.urls[1], api_key=None, headers=bearer(login(replicas.public_url, "dave"))) as dave:
        with pytest.raises(NotFoundError):
            await dave.runs.create(thread, "mandate", input=_user(FOLLOW_UP), multitask_strategy="rollback")
    await one.runs.join(thread, first["run_id"])
    assert (await one.runs.get(thread, first["run_id"]))["status"] == "success"


async def test_cancel_with_rollback_from_another_replica_deletes_the_run_and_its_checkpoints(sdks: list[Any]) -> None:
    one, two = sdks
    thread = (await one.threads.create())["thread_id"]
    await one.runs.wait(thread, "mandate", input=_user(FOLLOW_UP))
    before = await one.threads.get_state(thread)
    run = await one.runs.create(thread, "mandate", input=_user(SLOW_QUESTION))
    await _running(one, thread, run["run_id"])
    cancelled = await two.runs.cancel(thread, run["run_id"], action="rollback", wait=True)
    assert cancelled["status"] == "interrupted"
    with pytest.raises(NotFoundError):
        await one.runs.get(thread, run["run_id"])
    history = await one.threads.get_history(thread, limit=100)
    assert run["run_id"] not in {s["metadata"].get("run_id") for s in history}
    assert (await one.threads.get_state(thread))["checkpoint"] == before["checkpoint"]
