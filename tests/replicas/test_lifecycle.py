"""Run lifecycle across replicas: any replica joins, streams (with ``Last-Event-ID``) and cancels any
run; a dropped stream never leaves a thread busy; a busy thread refuses or queues a second run; a
process opening Mandate's services leaves live runs alone; webhooks are signed, retried, allow-listed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from mandate.audit import build_tracer_provider
from mandate.runtime.readiness import readiness
from mandate.runtime.services import open_services
from mandate.runtime.settings import DevSettings, Settings
from tests.replicas.conftest import HELD, SLOW, WEBHOOK_SECRET, Hooks, Replicas
from tests.utils.threads import bearer
from tests.utils.tokens import login

QUESTION = f"What does the contract say? {SLOW}"
HELD_QUESTION = f"What does the contract say? {HELD}"
"""A run that only a cancel ends early: if the cancel misses it, it ends much later as a success."""


def _input(text: str, **extra: Any) -> dict[str, Any]:
    return {"assistant_id": "mandate", "input": {"messages": [{"role": "user", "content": text}]}, **extra}


@pytest.fixture()
async def clients(replicas: Replicas) -> AsyncIterator[list[httpx.AsyncClient]]:
    """alice's client on each replica."""
    alice = login(replicas.public_url, "alice")
    opened = [httpx.AsyncClient(base_url=url, headers=bearer(alice), timeout=60) for url in replicas.urls]
    try:
        yield opened
    finally:
        for client in opened:
            await client.aclose()


async def _thread(client: httpx.AsyncClient) -> str:
    return str((await client.post("/threads", json={})).json()["thread_id"])


async def _status_when_running(client: httpx.AsyncClient, thread: str, run_id: str) -> str:
    for _ in range(600):  # bounded polling; no timing is asserted
        status = (await client.get(f"/threads/{thread}/runs/{run_id}")).json()["status"]
        if status != "pending":
            return str(status)
        await asyncio.sleep(0.02)
    raise AssertionError("the run never started")


async def _final(client: httpx.AsyncClient, thread: str, run_id: str) -> dict[str, Any]:
    await client.get(f"/threads/{thread}/runs/{run_id}/join")
    return dict((await client.get(f"/threads/{thread}/runs/{run_id}")).json())


async def test_cancel_from_another_replica_stops_a_streamed_run(clients: list[httpx.AsyncClient]) -> None:
    r0, r1, r2 = clients
    thread = await _thread(r0)
    async with aconnect_sse(r0, "POST", f"/threads/{thread}/runs/stream", json=_input(HELD_QUESTION)) as source:
        events = source.aiter_sse()
        first = await anext(events)
        run_id = json.loads(first.data)["run_id"]
        cancelled = (await r1.post(f"/threads/{thread}/runs/{run_id}/cancel")).json()
        rest = [event async for event in events]
    assert first.event == "metadata"
    assert cancelled["status"] == "interrupted"
    assert rest[-1].event == "end" and json.loads(rest[-1].data)["status"] == "interrupted"
    assert (await r2.get(f"/threads/{thread}/runs/{run_id}")).json()["status"] == "interrupted"
    assert (await r2.get(f"/threads/{thread}")).json()["status"] != "busy"


async def test_cancel_from_another_replica_stops_a_waited_run(clients: list[httpx.AsyncClient]) -> None:
    r0, r1, r2 = clients
    thread = await _thread(r0)
    waiting = asyncio.create_task(r0.post(f"/threads/{thread}/runs/wait", json=_input(HELD_QUESTION)))
    for _ in range(600):
        listed = (await r1.get(f"/threads/{thread}/runs")).json()
        if listed and listed[0]["status"] == "running":
            break
        await asyncio.sleep(0.02)
    run_id = listed[0]["run_id"]
    cancelled = (await r2.post(f"/threads/{thread}/runs/{run_id}/cancel")).json()
    answer = await waiting
    assert answer.status_code == 200 and cancelled["status"] == "interrupted"
    assert (await r0.get(f"/threads/{thread}/runs/{run_id}")).json()["status"] == "interrupted"


@pytest.mark.parametrize(
    ("on_disconnect", "question", "expected"),
    [("continue", QUESTION, "success"), ("cancel", HELD_QUESTION, "interrupted")],
)
async def test_dropped_stream_never_leaves_the_thread_busy(
    clients: list[httpx.AsyncClient], on_disconnect: str, question: str, expected: str
) -> None:
    r0, r1, _ = clients
    thread = await _thread(r0)
    body = _input(question, on_disconnect=on_disconnect)
    async with aconnect_sse(r0, "POST", f"/threads/{thread}/runs/stream", json=body) as source:
        run_id = json.loads((await anext(source.aiter_sse())).data)["run_id"]
    # The client went away. The run ends as asked, and the thread is free for the next run.
    assert (await _final(r1, thread, run_id))["status"] == expected
    assert (await r1.get(f"/threads/{thread}")).json()["status"] in ("idle", "interrupted")
    assert (await r1.post(f"/threads/{thread}/runs/wait", json=_input("What does the contract say?"))).status_code == 200


async def test_second_run_on_a_busy_thread_is_refused_by_default_and_queued_with_enqueue(
    clients: list[httpx.AsyncClient],
) -> None:
    r0, r1, r2 = clients
    thread = await _thread(r0)
    first = (await r0.post(f"/threads/{thread}/runs", json=_input(QUESTION))).json()
    await _status_when_running(r0, thread, first["run_id"])
    refused = await r1.post(f"/threads/{thread}/runs", json=_input("What is on the roadmap?"))
    assert (refused.status_code, refused.json()["code"]) == (409, "thread_busy")
    queued = await r1.post(f"/threads/{thread}/runs", json=_input("What is on the roadmap?", multitask_strategy="enqueue"))
    assert queued.status_code == 200 and queued.json()["status"] == "pending"
    values = (await r2.get(f"/threads/{thread}/runs/{queued.json()['run_id']}/join")).json()
    assert values["messages"][-2]["content"] == "What is on the roadmap?"  # its own run's values, not the first's
    runs = (await r2.get(f"/threads/{thread}/runs")).json()
    assert [(r["run_id"], r["status"]) for r in runs] == [(queued.json()["run_id"], "success"), (first["run_id"], "success")]


async def test_a_process_opening_the_services_leaves_live_runs_alone(
    clients: list[httpx.AsyncClient], stack_settings: Settings, replicas: Replicas
) -> None:
    r0, r1, _ = clients
    thread = await _thread(r0)
    run = (await r0.post(f"/threads/{thread}/runs", json=_input(QUESTION))).json()
    assert await _status_when_running(r1, thread, run["run_id"]) == "running"
    other = DevSettings(
        env="test", data_dir=stack_settings.data_dir, database_url=stack_settings.database_url,
        fga_api_url=stack_settings.fga_api_url, seed_demo=False, public_url=replicas.public_url,
    )
    async with open_services(other, tracer_provider=build_tracer_provider()):
        seen = {(await r1.get(f"/threads/{thread}/runs/{run['run_id']}")).json()["status"]}
    assert "error" not in seen
    assert (await _final(r1, thread, run["run_id"]))["status"] == "success"


async def test_join_stream_from_another_replica_resumes_after_last_event_id(clients: list[httpx.AsyncClient]) -> None:
    r0, r1, r2 = clients
    thread = await _thread(r0)
    body = _input(QUESTION, stream_mode=["values", "updates"])
    seen: list[tuple[int, str]] = []
    async with aconnect_sse(r0, "POST", f"/threads/{thread}/runs/stream", json=body) as source:
        async for event in source.aiter_sse():
            seen.append((int(event.id), event.event))
            if len(seen) == 2:
                break
    run_id = json.loads((await r1.get(f"/threads/{thread}/runs")).text)[0]["run_id"]
    headers = {"Last-Event-ID": str(seen[-1][0])}
    async with aconnect_sse(r2, "GET", f"/threads/{thread}/runs/{run_id}/stream", headers=headers) as source:
        assert source.response.status_code == 200
        rest = [(int(e.id), e.event) async for e in source.aiter_sse()]
    ids = [i for i, _ in seen + rest]
    assert ids == list(range(1, len(ids) + 1)), "every event once, in order, across the two replicas"
    assert rest[-1][1] == "end"


async def test_other_users_and_forged_ids_get_nothing_from_any_replica(
    clients: list[httpx.AsyncClient], replicas: Replicas
) -> None:
    r0, _, _ = clients
    thread = await _thread(r0)
    run = (await r0.post(f"/threads/{thread}/runs", json=_input("What does the contract say?"))).json()
    dave = login(replicas.public_url, "dave")
    carol = login(replicas.public_url, "carol")
    for url in replicas.urls:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            for intruder in (dave, carol):
                for method, path in (
                    ("GET", f"/threads/{thread}/runs/{run['run_id']}/join"),
                    ("GET", f"/threads/{thread}/runs/{run['run_id']}/stream"),
                    ("POST", f"/threads/{thread}/runs/{run['run_id']}/cancel"),
                ):
                    answer = await client.request(method, path, headers=bearer(intruder))
                    assert (answer.status_code, answer.json()["code"]) == (404, "thread_not_found")
    forged = await r0.get(f"/threads/{thread}/runs/{run['run_id']}/stream", headers={"Last-Event-ID": "1; DROP"})
    assert (forged.status_code, forged.json()["code"]) == (422, "unsupported_option")
    beyond = await r0.get(f"/threads/{thread}/runs/{run['run_id']}/stream", headers={"Last-Event-ID": "999999"})
    assert [line for line in beyond.text.splitlines() if line.startswith("event:")] == ["event: end"]
    for field, value in (("multitask_strategy", "shove"), ("on_disconnect", "explode"), ("webhook", "x" * 3000)):
        bad = await r0.post(f"/threads/{thread}/runs", json=_input("x", **{field: value}))
        assert bad.status_code == 422, field
    nuke = await r0.post(f"/threads/{thread}/runs/{run['run_id']}/cancel", params={"action": "nuke"})
    assert nuke.status_code == 422


async def test_webhook_is_signed_retried_and_refused_off_the_allow_list(
    clients: list[httpx.AsyncClient], hooks: Hooks
) -> None:
    r0, r1, _ = clients
    thread = await _thread(r0)
    allowed = hooks.url.removesuffix("/hook")
    for target in ("http://169.254.169.254/latest/meta-data", f"{allowed.replace('http://', 'http://user:pw@')}/hook",
                   allowed.replace("http://", "https://") + "/hook", "file:///etc/passwd"):
        refused = await r0.post(f"/threads/{thread}/runs", json=_input("x", webhook=target))
        assert (refused.status_code, refused.json()["code"]) == (422, "webhook_not_allowed"), target
    run = (await r0.post(f"/threads/{thread}/runs", json=_input("What does the contract say?", webhook=hooks.url))).json()
    await _final(r1, thread, run["run_id"])
    for _ in range(300):  # two 503 answers, then delivered after 1 s and 2 s of backoff
        if len(hooks.received) >= 3:
            break
        await asyncio.sleep(0.05)
    assert len(hooks.received) == 3
    headers, body = hooks.received[-1]
    timestamp, signature = (part.split("=", 1)[1] for part in headers["mandate-signature"].split(","))
    expected = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    notice = json.loads(body)
    assert (notice["run_id"], notice["status"], headers["mandate-webhook-id"]) == (run["run_id"], "success", run["run_id"])
    assert "net 45" not in body.decode() and "eyJ" not in body.decode() and "messages" not in notice


async def test_queued_run_keeps_its_token_sealed_in_the_vault_never_in_the_queue(
    clients: list[httpx.AsyncClient], db: Any
) -> None:
    r0, r1, _ = clients
    token = r0.headers["authorization"].removeprefix("Bearer ")
    thread = await _thread(r0)
    run = (await r0.post(f"/threads/{thread}/runs", json=_input(QUESTION))).json()
    await _status_when_running(r1, thread, run["run_id"])
    row = db.execute("SELECT to_jsonb(r)::text FROM mandate.runs r WHERE run_id = %s", (run["run_id"],)).fetchone()
    assert token not in row[0] and "eyJ" not in row[0]
    sealed = db.execute(
        "SELECT ciphertext FROM mandate.token_vault WHERE thread_id = %s", (f"run:{run['run_id']}",)
    ).fetchone()
    assert sealed is not None and token.encode() not in bytes(sealed[0])
    assert (await _final(r1, thread, run["run_id"]))["status"] == "success"
    gone = db.execute("SELECT count(*) FROM mandate.token_vault WHERE thread_id = %s", (f"run:{run['run_id']}",)).fetchone()
    assert gone == (0,)
    assert "eyJ" not in str(db.execute("SELECT data FROM mandate.run_events WHERE run_id = %s", (run["run_id"],)).fetchall())


async def test_ready_names_each_dependency_and_refuses_while_draining(
    replicas: Replicas, stack_settings: Settings
) -> None:
    async with httpx.AsyncClient(base_url=replicas.urls[0], timeout=30) as client:
        ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": True, "openfga": True, "issuer:dev": True, "accepting": True}
    broken = DevSettings(
        env="test", data_dir=stack_settings.data_dir, database_url=stack_settings.database_url,
        fga_api_url=stack_settings.fga_api_url, seed_demo=False, public_url=replicas.public_url,
    )
    async with open_services(broken, tracer_provider=build_tracer_provider()) as services:
        draining = await readiness(services, draining=True)
        unreachable = await readiness(
            replace(services, settings=broken.model_copy(update={"fga_api_url": "http://127.0.0.1:9"})), draining=False
        )
    assert draining["accepting"] is False and draining["postgres"] is True
    assert unreachable["openfga"] is False and unreachable["accepting"] is True
