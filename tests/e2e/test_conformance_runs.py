"""Runs as the reference server answers them: stateless runs leave nothing behind, ``events`` streams,
checkpoints name their run, ``Location`` headers lead back to the run, and every refusal is JSON.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client

from mandate.runtime.settings import Settings
from tests.utils.approvals import OTP, pending_payment
from tests.utils.conformance import assert_shape, error_of
from tests.utils.threads import bearer, new_thread

QUESTION = "What are the ACME contract terms?"
TICKET = "Open a ticket: projector in room 2 is dead"
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


def _user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture()
async def alice(base_url: str, token: Callable[..., str]) -> AsyncIterator[Any]:
    async with get_client(url=base_url, api_key=None, headers=bearer(token("alice"))) as client:
        yield client


def _stateless_threads(db: psycopg.Connection, subject: str) -> set[str]:
    rows = db.execute(
        "SELECT thread_id::text FROM mandate.threads WHERE owner_subject = %s AND metadata @> '{\"stateless\": true}'",
        (subject,),
    ).fetchall()
    return {r[0] for r in rows}


async def _gone(db: psycopg.Connection, thread_id: str) -> bool:
    for _ in range(300):  # the background run ends on its own; bounded polling, no timing asserted
        if not db.execute("SELECT 1 FROM mandate.threads WHERE thread_id = %s", (thread_id,)).fetchone():
            return True
        await asyncio.sleep(0.1)
    return False


# Stateless runs.


async def test_stateless_wait_stream_and_background_runs_leave_no_thread_behind(alice: Any, db: psycopg.Connection) -> None:
    before = _stateless_threads(db, "alice")
    answer = await alice.runs.wait(None, "mandate", input=_user(QUESTION))
    assert "net 45" in answer["messages"][-1]["content"]
    parts = [p async for p in alice.runs.stream(None, "mandate", input=_user(QUESTION), stream_mode="values")]
    assert parts[-1].event == "end" and "net 45" in json.dumps(parts[-2].data)
    run = await alice.runs.create(None, "mandate", input=_user(QUESTION))
    assert_shape(run, "Run")
    assert await _gone(db, run["thread_id"])
    assert _stateless_threads(db, "alice") == before
    assert run["thread_id"] not in {t["thread_id"] for t in await alice.threads.search(limit=1000)}
    assert db.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (run["thread_id"],)).fetchone() == (0,)


async def test_stateless_run_that_pauses_keeps_its_thread_for_its_owner_only(
    alice: Any, base_url: str, token: Callable[..., str], db: psycopg.Connection
) -> None:
    created: list[Any] = []
    paused = await alice.runs.wait(None, "mandate", input=_user(TICKET), on_run_created=created.append)
    assert paused["__interrupt__"][0]["value"]["kind"] == "consent"
    thread_id = created[0]["thread_id"]
    assert thread_id in _stateless_threads(db, "alice")
    async with get_client(url=base_url, api_key=None, headers=bearer(token("dave"))) as dave:
        with pytest.raises(httpx.HTTPStatusError) as hidden:
            await dave.runs.wait(thread_id, "mandate", command={"resume": {"decisions": [{"type": "approve"}]}})
        assert error_of(hidden.value) == (404, "thread_not_found")
    done = await alice.runs.wait(thread_id, "mandate", command={"resume": {"decisions": [{"type": "approve"}]}})
    assert "create_ticket: done" in done["messages"][-1]["content"]


async def test_stateless_run_with_on_completion_keep_keeps_its_thread(alice: Any, db: psycopg.Connection) -> None:
    created: list[Any] = []
    await alice.runs.wait(None, "mandate", input=_user(QUESTION), on_completion="keep", on_run_created=created.append)
    kept = await alice.threads.get(created[0]["thread_id"])
    assert kept["status"] == "idle" and kept["values"]["messages"]
    await alice.threads.delete(kept["thread_id"])


async def test_stateless_run_refused_up_front_leaves_no_thread(alice: Any, db: psycopg.Connection) -> None:
    before = _stateless_threads(db, "alice")
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await alice.runs.wait(None, "not-an-assistant", input=_user(QUESTION))
    assert error_of(refused.value) == (404, "assistant_not_found")
    with pytest.raises(httpx.HTTPStatusError) as batch:
        await alice.runs.create_batch(
            [{"assistant_id": "mandate", "input": _user(QUESTION)}, {"assistant_id": "nope", "input": _user(QUESTION)}]
        )
    assert error_of(batch.value) == (404, "assistant_not_found")
    assert _stateless_threads(db, "alice") == before


async def test_stateless_batch_is_bounded(alice: Any) -> None:
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await alice.runs.create_batch([{"assistant_id": "mandate", "input": _user(QUESTION)}] * 11)
    assert error_of(refused.value) == (422, "invalid_request")


# Stream mode "events".


async def test_events_stream_mode_speaks_astream_events_and_carries_no_token(
    client: httpx.Client, token: Callable[..., str]
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    body = {"assistant_id": "mandate", "input": _user(TICKET), "stream_mode": ["events", "values"]}
    with client.stream("POST", f"/threads/{thread}/runs/stream", json=body, headers=bearer(alice)) as response:
        raw = response.read().decode()
    assert JWT.search(raw) is None and alice not in raw
    frames = [json.loads(line[len("data: "):]) for line in raw.splitlines() if line.startswith("data: ")]
    names = [line[len("event: "):] for line in raw.splitlines() if line.startswith("event: ")]
    events = [frame for name, frame in zip(names, frames, strict=True) if name == "events"]
    assert {"on_chain_start", "on_chain_end", "on_chain_stream"} <= {e["event"] for e in events}
    for event in events:
        assert {"event", "name", "run_id", "data", "metadata", "tags", "parent_ids"} <= set(event)
    assert {"planner", "consent"} <= {e["name"] for e in events if e["event"] == "on_chain_start"}
    assert "values" in names and names[-1] == "end"

    resume = {"command": {"resume": {"decisions": [{"type": "approve"}]}}, "stream_mode": "events"}
    with client.stream("POST", f"/threads/{thread}/runs/stream", json=resume, headers=bearer(alice)) as response:
        resumed = response.read().decode()
    assert "tool_executor" in resumed and "create_ticket: done" in resumed
    assert JWT.search(resumed) is None, "the exchanged token never reaches the event stream"


# Checkpoint metadata.


async def test_checkpoints_name_their_run_graph_assistant_and_caller_never_a_token(
    client: httpx.Client, token: Callable[..., str], stack_settings: Settings
) -> None:
    thread = pending_payment(client, token)
    bob = token("bob", otp=OTP)
    [approval] = [a for a in client.get("/approvals", headers=bearer(bob)).json() if a["thread_id"] == thread]
    decided = client.post(f"/approvals/{approval['id']}/decision", json={"type": "approve"}, headers=bearer(bob))
    assert decided.status_code == 200, decided.text
    alice = token("alice")
    history = client.post(f"/threads/{thread}/history", json={"limit": 100}, headers=bearer(alice)).json()
    runs = client.get(f"/threads/{thread}/runs", headers=bearer(alice)).json()
    assert {s["metadata"]["run_id"] for s in history} == {r["run_id"] for r in runs}
    assert {s["metadata"]["graph_id"] for s in history} == {"mandate"}
    system = client.get("/assistants/mandate", headers=bearer(alice)).json()["assistant_id"]
    assert {s["metadata"]["assistant_id"] for s in history} == {system}
    by_run = {r["run_id"]: {s["metadata"]["user_id"] for s in history if s["metadata"]["run_id"] == r["run_id"]} for r in runs}
    users = [next(iter(u)) for u in by_run.values()]
    assert all(len(u) == 1 for u in by_run.values()) and len(set(users)) == 2, "alice's runs and bob's approval differ"
    text = json.dumps(history)
    assert JWT.search(text) is None
    assert not {"alice", "bob"} & set(users) and all(u.startswith("psn_") for u in users)


# Location headers.


@pytest.mark.parametrize("path", ["/threads/{t}/runs/wait", "/runs/wait"])
async def test_wait_answers_location_of_the_join_and_content_location_of_the_run(
    client: httpx.Client, token: Callable[..., str], path: str
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    body = {"assistant_id": "mandate", "input": _user(TICKET)}
    response = client.post(path.format(t=thread), json=body, headers=bearer(alice))
    assert response.status_code == 200
    run_path = response.headers["Content-Location"]
    assert re.fullmatch(r"/threads/[0-9a-f-]{36}/runs/[0-9a-f-]{36}", run_path)
    assert response.headers["Location"] == f"{run_path}/join"
    assert_shape(client.get(run_path, headers=bearer(alice)).json(), "Run")
    joined = client.get(response.headers["Location"], headers=bearer(alice)).json()
    assert joined["__interrupt__"][0]["value"]["kind"] == "consent"  # paused: the stateless thread stayed
    assert client.get(run_path, headers=bearer(token("dave"))).status_code == 404


@pytest.mark.parametrize("path", ["/threads/{t}/runs/stream", "/runs/stream"])
async def test_stream_answers_location_to_rejoin_the_run(client: httpx.Client, token: Callable[..., str], path: str) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    body = {"assistant_id": "mandate", "input": _user(TICKET)}
    with client.stream("POST", path.format(t=thread), json=body, headers=bearer(alice)) as response:
        location, run_path = response.headers["Location"], response.headers["Content-Location"]
        response.read()
    assert location == f"{run_path}/stream"
    with client.stream("GET", location, headers=bearer(alice)) as rejoined:
        assert rejoined.headers["content-type"].startswith("text/event-stream")
        text = rejoined.read().decode()
    assert "event: values" in text and "event: end" in text
    assert client.get(location, headers=bearer(token("carol"))).status_code == 404


async def test_background_run_answers_content_location(client: httpx.Client, token: Callable[..., str]) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    response = client.post(f"/threads/{thread}/runs", json={"assistant_id": "mandate", "input": _user(QUESTION)}, headers=bearer(alice))
    assert response.headers["Content-Location"] == f"/threads/{thread}/runs/{response.json()['run_id']}"
    assert "Location" not in response.headers


# Errors.


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/no/such/route", None, 404, "not_found"),
        ("GET", "/threads/{t}/runs/{t}/nothing", None, 404, "not_found"),
        ("PUT", "/threads/{t}", None, 405, "method_not_allowed"),
        ("PUT", "/assistants/search", None, 405, "method_not_allowed"),
        ("POST", "/threads/search", "{not json", 422, "invalid_request"),
        ("POST", "/threads/search", {"limit": "ten"}, 422, "invalid_request"),
        ("POST", "/assistants/search", "{not json", 422, "invalid_request"),
        ("POST", "/assistants/search", {"sort_by": "password"}, 422, "invalid_request"),
        ("POST", "/assistants/count", {"graph_id": 7}, 422, "invalid_request"),
        ("GET", "/threads/not-a-uuid", None, 404, "thread_not_found"),
        ("GET", "/threads/{t}/runs/not-a-uuid", None, 404, "run_not_found"),
        ("GET", "/assistants/not-a-uuid", None, 404, "assistant_not_found"),
        ("GET", "/threads/{t}/runs/{t}/stream", None, 404, "run_not_found"),
        ("POST", "/threads/{t}/runs/wait", {"input": _user("x"), "config": {"configurable": {"thread_id": "x"}}}, 422, "control_field_refused"),
        ("POST", "/threads/{t}/runs", {"input": _user("x"), "context": {"principal": "bob"}}, 422, "control_field_refused"),
        ("POST", "/runs/wait", {"input": _user("x"), "checkpoint": {"checkpoint_id": "1"}}, 422, "control_field_refused"),
        ("POST", "/runs/cancel", {}, 422, "invalid_request"),
        ("POST", "/threads/prune", {"thread_ids": ["x"] * 2}, 422, "invalid_request"),
        ("GET", "/threads/{t}/runs/{t}/stream?stream_mode=secrets", None, 422, "unsupported_option"),
        ("DELETE", "/assistants/mandate?delete_threads=true", None, 422, "unsupported_option"),
        ("PATCH", "/threads/{t}", {"metadata": {}, "ttl": {"ttl": 1}}, 422, "unsupported_option"),
        ("POST", "/threads/{t}/copy", None, 501, "not_implemented"),
        ("GET", "/threads/{t}/stream", None, 501, "not_implemented"),
        ("POST", "/runs/crons", {}, 404, "not_found"),
        ("POST", "/assistants/search", {"limit": 10**12}, 422, "invalid_request"),
        ("POST", "/assistants/mandate/versions", {"limit": 10**12}, 422, "invalid_request"),
        ("POST", "/assistants/mandate/latest", {"version": 0}, 422, "invalid_request"),
        ("POST", "/assistants/mandate/latest", None, 422, "invalid_request"),
        ("POST", "/threads/search", {"sort_by": "owner_subject"}, 422, "invalid_request"),
        ("POST", "/threads/search", {"ids": ["not-a-uuid"]}, 422, "invalid_request"),
        ("POST", "/threads/prune", {"thread_ids": [str(uuid.uuid4())] * 1001}, 422, "invalid_request"),
        ("POST", "/runs/wait", {"input": _user("x"), "on_completion": "explode"}, 422, "invalid_request"),
        ("POST", "/runs/batch", [], 422, "invalid_request"),
        ("POST", "/threads/{t}/runs", {"input": _user("x"), "after_seconds": 30}, 422, "unsupported_option"),
        ("POST", "/threads/{t}/runs/wait", {"input": _user("x"), "durability": "exit"}, 422, "invalid_request"),
    ],
)
def test_every_refusal_is_mandates_json_error(
    client: httpx.Client, token: Callable[..., str], method: str, path: str, body: Any, status: int, code: str
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    content = body if isinstance(body, str) else json.dumps(body) if body is not None else None
    headers = {**bearer(alice), "Content-Type": "application/json"}
    response = client.request(method, path.format(t=thread), content=content, headers=headers)
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert set(response.json()) <= {"code", "message", "errors"} and "detail" not in response.json()


async def test_join_stream_of_another_users_run_is_404(
    alice: Any, base_url: str, token: Callable[..., str]
) -> None:
    thread = await alice.threads.create()
    run = await alice.runs.create(thread["thread_id"], "mandate", input=_user(QUESTION))
    async with get_client(url=base_url, api_key=None, headers=bearer(token("dave"))) as dave:
        with pytest.raises(httpx.HTTPStatusError) as hidden:
            async for _ in dave.runs.join_stream(thread["thread_id"], run["run_id"]):
                pass
        assert error_of(hidden.value) == (404, "thread_not_found")
        with pytest.raises(httpx.HTTPStatusError) as cancel:
            await dave.runs.delete(thread["thread_id"], run["run_id"])
        assert error_of(cancel.value) == (404, "thread_not_found")
        with pytest.raises(httpx.HTTPStatusError) as cancel_many:
            await dave.runs.cancel_many(thread_id=thread["thread_id"], run_ids=[run["run_id"]])
        assert error_of(cancel_many.value) == (404, "thread_not_found")
    await alice.runs.join(thread["thread_id"], run["run_id"])
    assert (await alice.runs.get(thread["thread_id"], run["run_id"]))["status"] == "success"


async def test_thread_search_and_count_by_ids_never_reach_another_users_threads(
    alice: Any, base_url: str, token: Callable[..., str]
) -> None:
    async with get_client(url=base_url, api_key=None, headers=bearer(token("dave"))) as dave:
        daves = await dave.threads.create(metadata={"probe": "ids"})
        assert await alice.threads.search(ids=[daves["thread_id"]]) == []
        assert await alice.threads.count(metadata={"probe": "ids"}) == 0
        assert [t["thread_id"] for t in await dave.threads.search(ids=[daves["thread_id"]])] == [daves["thread_id"]]


async def test_state_write_naming_another_threads_checkpoint_is_a_refused_fork(alice: Any) -> None:
    mine = await alice.threads.create()
    await alice.runs.wait(mine["thread_id"], "mandate", input=_user(QUESTION))
    other = await alice.threads.create()
    await alice.runs.wait(other["thread_id"], "mandate", input=_user(QUESTION))
    foreign = (await alice.threads.get_state(other["thread_id"]))["checkpoint"]
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await alice.threads.update_state(mine["thread_id"], _user("x"), checkpoint_id=foreign["checkpoint_id"])
    assert error_of(refused.value) == (422, "state_fork_refused")


async def test_run_still_marked_running_cannot_be_deleted(alice: Any, db: psycopg.Connection) -> None:
    thread = await alice.threads.create()
    run = await alice.runs.create(thread["thread_id"], "mandate", input=_user(QUESTION))
    await alice.runs.join(thread["thread_id"], run["run_id"])
    db.execute("UPDATE mandate.runs SET status = 'running' WHERE run_id = %s", (run["run_id"],))
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await alice.runs.delete(thread["thread_id"], run["run_id"])
    assert error_of(refused.value) == (409, "run_in_progress")
    assert (await alice.runs.get(thread["thread_id"], run["run_id"]))["status"] == "running"
