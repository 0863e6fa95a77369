"""The official ``langgraph-sdk`` client works against Mandate unchanged, and only for the owner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import NotFoundError

PAYMENT = "Send 250 EUR to Initech Services GmbH"
TICKET = "Open a ticket: projector in room 2 is dead"


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_async_sdk_streams_to_interrupt_reads_state_and_resumes(base_url: str, token: Callable[..., str]) -> None:
    async with get_client(url=base_url, api_key=None, headers=_headers(token("alice"))) as alice:
        await _stream_interrupt_state_resume(alice)


async def _stream_interrupt_state_resume(alice: Any) -> None:
    assistants = await alice.assistants.search()
    assert {a["graph_id"] for a in assistants} == {"mandate", "supervisor"}
    thread = await alice.threads.create(metadata={"purpose": "sdk"})
    events = [
        part
        async for part in alice.runs.stream(
            thread["thread_id"], "mandate", input={"messages": [{"role": "user", "content": TICKET}]},
            stream_mode=["values", "updates"],
        )
    ]
    names = [part.event for part in events]
    assert names[0] == "metadata" and "values" in names and "updates" in names and names[-1] == "end"
    interrupt_updates = [p.data["__interrupt__"] for p in events if p.event == "updates" and "__interrupt__" in p.data]
    assert interrupt_updates[0][0]["value"]["kind"] == "consent"

    state = await alice.threads.get_state(thread["thread_id"])
    assert state["next"] == ["consent"]
    assert state["interrupts"][0]["value"]["action_requests"][0]["name"] == "create_ticket"
    history = await alice.threads.get_history(thread["thread_id"], limit=20)
    assert len(history) >= 3 and history[0]["checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]
    interrupted = await alice.threads.search(status="interrupted", limit=100)
    assert thread["thread_id"] in {t["thread_id"] for t in interrupted}

    final = await alice.runs.wait(
        thread["thread_id"], "mandate", command={"resume": {"decisions": [{"type": "approve"}]}}
    )
    assert "create_ticket: done" in final["messages"][-1]["content"]
    runs = await alice.runs.list(thread["thread_id"])
    assert [r["status"] for r in runs] == ["success", "interrupted"]


async def test_async_sdk_background_run_joins_and_cancels(base_url: str, token: Callable[..., str]) -> None:
    async with get_client(url=base_url, api_key=None, headers=_headers(token("alice"))) as alice:
        await _background_join_cancel(alice)


async def _background_join_cancel(alice: Any) -> None:
    thread = await alice.threads.create()
    run = await alice.runs.create(
        thread["thread_id"], "mandate", input={"messages": [{"role": "user", "content": "What are the ACME contract terms?"}]}
    )
    values = await alice.runs.join(thread["thread_id"], run["run_id"])
    assert "net 45" in values["messages"][-1]["content"]
    assert (await alice.runs.get(thread["thread_id"], run["run_id"]))["status"] == "success"

    paused = await alice.threads.create()
    before = await alice.runs.create(
        paused["thread_id"], "mandate", input={"messages": [{"role": "user", "content": TICKET}]}, interrupt_before=["consent"]
    )
    await alice.runs.join(paused["thread_id"], before["run_id"])
    assert (await alice.threads.get_state(paused["thread_id"]))["next"] == ["consent"]
    cancelled = await alice.runs.cancel(paused["thread_id"], before["run_id"])
    assert cancelled["run_id"] == before["run_id"]


def test_sync_sdk_stateless_wait_and_payment_step_up(base_url: str, token: Callable[..., str]) -> None:
    with get_sync_client(url=base_url, api_key=None, headers=_headers(token("alice"))) as alice:
        _stateless_and_step_up(alice)


def _stateless_and_step_up(alice: Any) -> None:
    answer = alice.runs.wait(None, "mandate", input={"messages": [{"role": "user", "content": "What are the Globex contract terms?"}]})
    assert "Hooli" not in str(answer) and "net 30" not in str(answer)  # globex is another tenant
    thread = alice.threads.create()
    values = alice.runs.wait(thread["thread_id"], "mandate", input={"messages": [{"role": "user", "content": PAYMENT}]})
    assert values["__interrupt__"][0]["value"]["kind"] == "step_up"
    schemas = alice.assistants.get_schemas("mandate")
    assert "messages" in schemas["input_schema"]["properties"]
    graph = alice.assistants.get_graph("mandate")
    assert {"planner", "retriever", "step_up", "consent", "tool_executor", "responder"} <= {n["id"] for n in graph["nodes"]}


def test_sync_sdk_other_users_token_cannot_touch_the_thread(base_url: str, token: Callable[..., str]) -> None:
    with (
        get_sync_client(url=base_url, api_key=None, headers=_headers(token("alice"))) as alice,
        get_sync_client(url=base_url, api_key=None, headers=_headers(token("bob"))) as bob,
        get_sync_client(url=base_url, api_key=None) as anonymous,
    ):
        _isolation(alice, bob, anonymous)


def _isolation(alice: Any, bob: Any, anonymous: Any) -> None:
    thread = alice.threads.create()
    alice.runs.wait(thread["thread_id"], "mandate", input={"messages": [{"role": "user", "content": TICKET}]})
    with pytest.raises(NotFoundError):
        bob.threads.get(thread["thread_id"])
    with pytest.raises(NotFoundError):
        bob.threads.get_state(thread["thread_id"])
    with pytest.raises(NotFoundError):
        bob.threads.get_history(thread["thread_id"])
    approve = {"resume": {"decisions": [{"type": "approve"}]}}
    with pytest.raises((NotFoundError, httpx.HTTPStatusError), match="404|[Tt]hread not found|thread_not_found"):
        bob.runs.wait(thread["thread_id"], "mandate", command=approve)
    with pytest.raises((NotFoundError, httpx.HTTPStatusError), match="404|[Tt]hread not found|thread_not_found"):
        list(bob.runs.stream(thread["thread_id"], "mandate", command=approve))
    assert alice.threads.get_state(thread["thread_id"])["next"] == ["consent"]
    assert thread["thread_id"] not in {t["thread_id"] for t in bob.threads.search(limit=100)}
    with pytest.raises(Exception, match="bearer token is required"):
        anonymous.threads.search()


def test_assistants_search_accepts_studios_text_plain_body_and_openapi_is_served(
    base_url: str, token: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {token('alice')}", "Content-Type": "text/plain;charset=UTF-8"}
    found = httpx.post(f"{base_url}/assistants/search", content='{"graph_id":"supervisor","limit":10}', headers=headers)
    assert found.status_code == 200
    assert [a["graph_id"] for a in found.json()] == ["supervisor"]
    paths = httpx.get(f"{base_url}/openapi.json").json()["paths"]
    assert {"/threads/{thread_id}/runs/stream", "/approvals/{approval_id}/decision", "/assistants/search"} <= set(paths)
