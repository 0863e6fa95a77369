"""The multi-agent supervisor: each agent acts with its own identity and grants, and both must allow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg

from mandate.runtime.settings import Settings
from tests.utils.approvals import PAYMENT
from tests.utils.threads import bearer, last_answer, new_thread, resume


def _ask(client: httpx.Client, token: str, thread: str, text: str, assistant: str = "supervisor") -> dict[str, Any]:
    body = {"assistant_id": assistant, "input": {"messages": [{"role": "user", "content": text}]}}
    response = client.post(f"/threads/{thread}/runs/wait", json=body, headers=bearer(token))
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_supervisor_routes_question_to_research_agent(client: httpx.Client, token: Callable[..., str]) -> None:
    alice = token("alice")
    values = _ask(client, alice, new_thread(client, alice), "Summarize the latest contract terms for ACME.")
    assert "net 45" in last_answer(values)


def test_research_agent_without_grant_reads_nothing_even_for_an_entitled_user(
    client: httpx.Client, token: Callable[..., str]
) -> None:
    bob = token("bob")
    question = "What was the gross payroll in October?"
    via_supervisor = _ask(client, bob, new_thread(client, bob), question)
    via_pipeline = _ask(client, bob, new_thread(client, bob), question, assistant="mandate")
    assert "1,284,500" in last_answer(via_pipeline)  # bob may read payroll, and agent:retriever may too
    assert "1,284,500" not in str(via_supervisor)  # agent:researcher holds no grant on payroll
    assert via_supervisor["context"] == []


def test_operations_agent_acts_with_its_own_identity(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection, stack_settings: Settings
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    paused = _ask(client, alice, thread, "Open a ticket: broken window in the lobby")
    request = paused["__interrupt__"][0]["value"]
    assert request["kind"] == "consent" and request["agent"] == "agent:operations"
    done = resume(client, alice, thread, {"decisions": [{"type": "approve"}]}).json()
    assert "create_ticket: done" in last_answer(done)
    [(actor, subject)] = db.execute(
        "SELECT actor, subject FROM mandate.demo_effects WHERE api = 'tickets' AND idempotency_key LIKE %s",
        (f"{thread}:%",),
    ).fetchall()
    assert (actor, subject) == (stack_settings.agents["operations"].client_id, "alice")
    agents = {row[0] for row in db.execute("SELECT agent FROM mandate.audit_records WHERE thread_id = %s", (thread,))}
    assert agents == {"agent:operations"}


def test_operations_agent_without_grant_is_denied_though_the_user_may(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    values = _ask(client, alice, thread, PAYMENT)
    assert "__interrupt__" not in values
    assert values["outcomes"][0]["code"] == "agent_not_allowed"
    denied = db.execute(
        "SELECT agent, decision FROM mandate.audit_records WHERE thread_id = %s AND event = 'tool.denied'", (thread,)
    ).fetchall()
    assert denied == [("agent:operations", "agent_not_allowed")]
    pipeline = _ask(client, alice, new_thread(client, alice), PAYMENT, assistant="mandate")
    assert pipeline["__interrupt__"][0]["value"]["kind"] == "step_up"  # the executor agent may; step-up next


def test_supervisor_graph_shows_its_agents_as_subgraphs(client: httpx.Client, token: Callable[..., str]) -> None:
    headers = bearer(token("alice"))
    graph = client.get("/assistants/supervisor/graph", params={"xray": "true"}, headers=headers).json()
    node_ids = {node["id"] for node in graph["nodes"]}
    assert {"supervisor", "research:retrieve", "operations:step_up", "operations:consent", "operations:tool_executor"} <= node_ids
    subgraphs = client.get("/assistants/supervisor/subgraphs", headers=headers).json()
    assert set(subgraphs) == {"research", "operations"}


def test_thread_keeps_the_assistant_of_its_first_run(client: httpx.Client, token: Callable[..., str]) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    _ask(client, alice, thread, "What does the roadmap say?")
    body = {"assistant_id": "mandate", "input": {"messages": [{"role": "user", "content": "hello"}]}}
    response = client.post(f"/threads/{thread}/runs/wait", json=body, headers=bearer(alice))
    assert response.status_code == 409 and response.json()["code"] == "thread_bound"
