"""A hand-built ``StateGraph`` project (``examples/research_desk``) under Mandate, driven with the
official ``langgraph-sdk``: authorized retrieval for user AND agent, tools through the secured node."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk.client import SyncLangGraphClient

from mandate.runtime.settings import Settings
from tests.utils.projects import sdk_clients, served_project
from tests.utils.servers import free_port
from tests.utils.threads import bearer
from tests.utils.tokens import login

CONTRACTS = "Summarize the latest contract terms for ACME."


@pytest.fixture(scope="module")
def desk_url(stack_settings: Settings) -> Iterator[str]:
    port = free_port()
    env = {"TICKETS_API_URL": f"http://127.0.0.1:{port}/demo/tickets"}
    with served_project(stack_settings, "research_desk", port=port, env=env) as url:
        yield url


@pytest.fixture
def sdk(desk_url: str) -> Iterator[Callable[[str], SyncLangGraphClient]]:
    with sdk_clients(desk_url) as signed_in:
        yield signed_in  # type: ignore[misc]


def _ask(client: SyncLangGraphClient, text: str) -> tuple[str, dict[str, Any]]:
    thread = client.threads.create()["thread_id"]
    return thread, client.runs.wait(thread, "desk", input={"messages": [{"role": "user", "content": text}]})  # type: ignore[return-value]


def _answer(values: dict[str, Any]) -> str:
    return str(values["messages"][-1]["content"])


def test_context_reaches_the_graph_only_if_user_and_agent_may_read_it(sdk: Callable[[str], SyncLangGraphClient]) -> None:
    _, alice = _ask(sdk("alice"), CONTRACTS)
    assert "ACME Master Services Agreement" in _answer(alice)
    assert all(chunk["doc_id"] != "acme-payroll" for chunk in alice["context"])
    _, dave = _ask(sdk("dave"), CONTRACTS)  # engineering: he may not read contracts
    assert dave["context"] == [] and "no documents" in _answer(dave)


def test_the_agents_own_grant_narrows_what_a_user_may_read(sdk: Callable[[str], SyncLangGraphClient]) -> None:
    # bob may read the payroll and the roadmap; the desk agent reads only contracts.
    _, bob = _ask(sdk("bob"), "ACME payroll summary and the engineering roadmap 2026")
    assert {chunk["doc_id"] for chunk in bob["context"]} <= {"acme-msa", "acme-vendor-notice"}


def test_a_ticket_waits_for_consent_and_is_opened_once_as_the_desk(
    sdk: Callable[[str], SyncLangGraphClient], db: psycopg.Connection
) -> None:
    alice = sdk("alice")
    thread, values = _ask(alice, "Please open a ticket: the contract archive is unreachable")
    request = values["__interrupt__"][0]["value"]
    assert (request["kind"], request["agent"], request["action_requests"][0]["name"]) == ("consent", "agent:desk", "open_ticket")
    assert _effects(db, thread) == []
    done = alice.runs.wait(thread, "desk", command={"resume": {"decisions": [{"type": "approve"}]}})
    assert _answer(done).startswith("Ticket ")  # type: ignore[arg-type]
    [(subject, actor)] = _effects(db, thread)
    assert (subject, actor) == ("alice", "mandate-agent-desk")


def test_the_projects_auth_handler_narrows_but_cannot_widen(desk_url: str, sdk: Callable[[str], SyncLangGraphClient]) -> None:
    refused = httpx.post(f"{desk_url}/threads", json={}, headers=bearer(login(desk_url, "carol")), timeout=30)
    assert refused.status_code == 403 and refused.json()["code"] == "project_auth_refused"
    thread, _ = _ask(sdk("alice"), CONTRACTS)
    # A run of an assistant bob (an assistant admin) configured from the desk: Mandate allows it, the
    # project's handler refuses it.
    bob = bearer(login(desk_url, "bob"))
    configured = httpx.post(f"{desk_url}/assistants", headers=bob, timeout=30, json={"graph_id": "desk", "name": "desk, tuned"})
    assert configured.status_code == 200, configured.text
    thread = httpx.post(f"{desk_url}/threads", json={}, headers=bob, timeout=30).json()["thread_id"]
    run = httpx.post(
        f"{desk_url}/threads/{thread}/runs/wait", headers=bob, timeout=30,
        json={"assistant_id": configured.json()["assistant_id"], "input": {"messages": [{"role": "user", "content": CONTRACTS}]}},
    )
    assert run.status_code == 403 and run.json()["code"] == "project_auth_refused"
    alice = bearer(login(desk_url, "alice"))
    thread = httpx.post(f"{desk_url}/threads", json={}, headers=alice, timeout=30).json()["thread_id"]
    # The handler says anyone may read any thread; Mandate's owner check decides first.
    foreign = httpx.get(f"{desk_url}/threads/{thread}", headers=bearer(login(desk_url, "dave")), timeout=30)
    assert foreign.status_code == 404


def _effects(db: psycopg.Connection, thread: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT subject, actor FROM mandate.demo_effects WHERE api = 'tickets' AND idempotency_key LIKE %s", (f"{thread}:%",)
    ).fetchall()


def test_an_openapi_operation_is_a_gated_tool_with_a_delegated_token(
    sdk: Callable[[str], SyncLangGraphClient], db: psycopg.Connection
) -> None:
    thread, values = _ask(sdk("alice"), "File ticket: the archive search is slow")
    assert "__interrupt__" not in values  # its policy asks no one; every other gate held
    assert _answer(values).startswith('{"id": "TCK-')
    [(subject, actor)] = _effects(db, thread)
    assert (subject, actor) == ("alice", "mandate-agent-desk")
    [(body,)] = db.execute("SELECT body FROM mandate.demo_effects WHERE idempotency_key LIKE %s", (f"{thread}:%",)).fetchall()
    assert body == {"title": "File ticket: the archive search is slow", "description": "", "priority": "low"}
    audited = db.execute(
        "SELECT event, decision FROM mandate.audit_records WHERE thread_id = %s ORDER BY seq", (thread,)
    ).fetchall()
    assert ("tool.started", "allowed") in audited and ("tool.succeeded", "ok") in audited
