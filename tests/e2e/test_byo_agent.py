"""A team's own ``create_agent`` project (``examples/assistant``) served by Mandate, driven with the
official ``langgraph-sdk``: every tool call passes the gate, and each control holds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from mandate.runtime.settings import Settings
from tests.utils.approvals import OTP
from tests.utils.mcp_notes import NotesServer, notes_server
from tests.utils.openai_double import ChatDouble
from tests.utils.projects import sdk_clients, served_project
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.threads import bearer
from tests.utils.tokens import claims_of, login

INVOICE = {"amount": 250.0, "currency": "EUR", "recipient": "Initech Services GmbH", "reference": "INV-7"}


@pytest.fixture(scope="module")
def model() -> Iterator[tuple[ChatDouble, str]]:
    double = ChatDouble(
        rules=[
            (r"convert", "convert_currency", {"amount": 100, "rate": 1.1}),
            (r"ticket", "open_ticket", {"title": "Projector broken in room 4", "priority": "high"}),
            (r"invoice", "pay_invoice", INVOICE),
            (r"wipe", "delete_everything", {}),
            (r"note:", "add_note", {"text": "Buy milk"}),
            (r"forget", "delete_notes", {}),
        ]
    )
    with serve_in_thread(double.app()) as url:
        yield double, url


@pytest.fixture(scope="module")
def project_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def notes(project_port: int) -> Iterator[NotesServer]:
    """The example notes MCP server, trusting the dev issuer of the Mandate below."""
    with notes_server(issuer=f"http://127.0.0.1:{project_port}/dev-idp") as server:
        yield server


@pytest.fixture(scope="module")
def project_url(stack_settings: Settings, model: tuple[ChatDouble, str], project_port: int, notes: NotesServer) -> Iterator[str]:
    """Mandate serving the example project beside the built-in graphs, on the shared Postgres and OpenFGA;
    the users' grants on its tools are the project's ``dev_grants``."""
    url = f"http://127.0.0.1:{project_port}"
    env = {
        "NOTES_MCP_URL": notes.url, "OPENAI_BASE_URL": f"{model[1]}/v1", "OPENAI_API_KEY": "sk-test-double",
        "TICKETS_API_URL": f"{url}/demo/tickets", "PAYMENTS_API_URL": f"{url}/demo/payments",
    }
    with served_project(stack_settings, "assistant", port=project_port, env=env) as served:
        yield served


@pytest.fixture
def sdk(project_url: str) -> Iterator[Callable[..., SyncLangGraphClient]]:
    """The official SDK's client, signed in as a demo user (closed after the test)."""
    with sdk_clients(project_url) as signed_in:
        yield signed_in  # type: ignore[misc]


def _ask(client: SyncLangGraphClient, text: str) -> tuple[str, dict[str, Any]]:
    thread = client.threads.create()["thread_id"]
    values = client.runs.wait(thread, "assistant", input={"messages": [{"role": "user", "content": text}]})
    return thread, values  # type: ignore[return-value]


def _tool_messages(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in values["messages"] if m["type"] == "tool"]


def _audit(db: psycopg.Connection, thread: str) -> list[tuple[str, str | None, str]]:
    return db.execute(
        "SELECT event, agent, decision FROM mandate.audit_records WHERE thread_id = %s ORDER BY seq", (thread,)
    ).fetchall()


def test_the_project_graph_is_served_as_an_assistant(project_url: str, sdk: Callable[..., SyncLangGraphClient]) -> None:
    client = sdk("alice")
    graphs = {a["graph_id"] for a in client.assistants.search(limit=100)}
    assert graphs == {"assistant"}  # the project replaces the built-in graphs


def test_an_ungated_tool_runs_once_and_is_audited_for_user_and_agent(project_url: str, sdk: Callable[..., SyncLangGraphClient], db: psycopg.Connection) -> None:
    thread, values = _ask(sdk("alice"), "convert 100 at 1.1")
    [answer] = _tool_messages(values)
    assert answer["content"] == "110.00" and answer["status"] == "success"
    events = _audit(db, thread)
    assert ("tool.started", "agent:assistant", "allowed") in events
    assert ("tool.succeeded", "agent:assistant", "ok") in events


def test_a_user_without_the_grant_is_denied_before_anything_is_asked(project_url: str, sdk: Callable[..., SyncLangGraphClient], db: psycopg.Connection) -> None:
    thread, values = _ask(sdk("carol"), "pay the invoice")
    assert "__interrupt__" not in values
    [answer] = _tool_messages(values)
    assert answer["status"] == "error" and json.loads(answer["content"]) == {"status": "denied", "code": "user_not_allowed"}
    assert ("tool.denied", "agent:assistant", "user_not_allowed") in _audit(db, thread)


def test_a_tool_without_a_policy_is_denied(project_url: str, sdk: Callable[..., SyncLangGraphClient], db: psycopg.Connection) -> None:
    thread, values = _ask(sdk("alice"), "wipe the disks")
    [answer] = _tool_messages(values)
    assert json.loads(answer["content"]) == {"status": "denied", "code": "unknown_tool"}
    assert ("tool.denied", "agent:assistant", "unknown_tool") in _audit(db, thread)


def test_consent_then_one_ticket_with_a_delegated_token(project_url: str, sdk: Callable[..., SyncLangGraphClient], db: psycopg.Connection) -> None:
    alice = sdk("alice")
    thread, values = _ask(alice, "open a ticket: the projector is broken")
    [pause] = values["__interrupt__"]
    request = pause["value"]
    assert request["kind"] == "consent" and request["agent"] == "agent:assistant"
    assert request["action_requests"] == [
        {"name": "open_ticket", "args": {"title": "Projector broken in room 4", "priority": "high"},
         "description": "Allow open_ticket with these arguments?"}
    ]
    # Nothing ran while it waited; dave (same tenant, not the requester) cannot consent for alice.
    assert _effects(db, "tickets", thread) == []
    dave = httpx.post(
        f"{project_url}/threads/{thread}/runs/wait", headers=bearer(login(project_url, "dave")),
        json={"command": {"resume": {"decisions": [{"type": "approve"}]}}}, timeout=30,
    )
    assert dave.status_code == 404  # not his thread

    done = alice.runs.wait(thread, "assistant", command={"resume": {"decisions": [{"type": "approve"}]}})
    [answer] = _tool_messages(done)  # type: ignore[arg-type]
    assert answer["content"].startswith("Ticket ") and answer["status"] == "success"
    [(subject, actor, audience, scopes)] = _effects(db, "tickets", thread)
    assert (subject, actor, audience, scopes) == ("alice", "mandate-agent-assistant", f"{project_url}/demo/tickets", ["tickets:write"])
    # A replayed approval does not open a second ticket.
    replay = httpx.post(
        f"{project_url}/threads/{thread}/runs/wait", headers=bearer(login(project_url, "alice")),
        json={"command": {"resume": {"decisions": [{"type": "approve"}]}}}, timeout=30,
    )
    assert replay.status_code == 409 and replay.json()["code"] == "thread_not_interrupted"
    assert len(_effects(db, "tickets", thread)) == 1


def test_four_eyes_payment_step_up_then_another_persons_approval(project_url: str, sdk: Callable[..., SyncLangGraphClient], db: psycopg.Connection) -> None:
    alice = sdk("alice")
    thread, values = _ask(alice, "please pay the invoice from Initech")
    assert values["__interrupt__"][0]["value"]["kind"] == "step_up"
    alice_mfa = sdk("alice", otp=OTP)
    values = alice_mfa.runs.wait(thread, "assistant", command={"resume": {}})  # type: ignore[assignment]
    request = values["__interrupt__"][0]["value"]
    assert request["kind"] == "approval" and request["action_requests"][0]["args"] == INVOICE
    assert "error" not in request  # the step-up resume was not taken as a decision

    own = alice_mfa.runs.wait(thread, "assistant", command={"resume": {"decisions": [{"type": "approve"}]}})
    assert own["__interrupt__"][0]["value"]["error"] == "requester_cannot_approve"  # type: ignore[index]
    assert _effects(db, "payments", thread) == []

    bob = login(project_url, "bob", otp=OTP)
    [item] = [a for a in httpx.get(f"{project_url}/approvals", headers=bearer(bob)).json() if a["thread_id"] == thread]
    assert (item["action"], item["agent"], item["requester"]) == ("pay_invoice", "agent:assistant", "alice")
    decided = httpx.post(
        f"{project_url}/approvals/{item['id']}/decision", headers=bearer(bob), json={"type": "approve"}, timeout=60
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["approval"]["outcome"]["status"] == "succeeded"
    [(subject, actor, audience, _)] = _effects(db, "payments", thread)
    assert (subject, actor, audience) == ("alice", "mandate-agent-assistant", f"{project_url}/demo/payments")
    events = _audit(db, thread)
    assert ("consent.refused", "agent:assistant", "requester_cannot_approve") in events
    assert ("consent.decided", "agent:assistant", "approve") in events


def test_an_approvers_edit_beyond_policy_goes_back_to_the_requester_and_runs_once(
    project_url: str, sdk: Callable[..., SyncLangGraphClient], db: psycopg.Connection
) -> None:
    """Several questions in one tool call: each answer is taken in the run that brought it, never replayed."""
    alice = sdk("alice", otp=OTP)
    thread, values = _ask(alice, "pay the invoice from Initech")
    assert values["__interrupt__"][0]["value"]["kind"] == "approval"  # signed in with MFA: no step-up pause
    bob = login(project_url, "bob", otp=OTP)
    [item] = [a for a in httpx.get(f"{project_url}/approvals", headers=bearer(bob)).json() if a["thread_id"] == thread]
    edited = {**INVOICE, "recipient": "Mallory Ltd"}
    decided = httpx.post(
        f"{project_url}/approvals/{item['id']}/decision", headers=bearer(bob), timeout=60,
        json={"type": "edit", "edited_action": {"name": "pay_invoice", "args": edited}},
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["approval"]["status"] == "edited" and _effects(db, "payments", thread) == []
    # alice steps up for the new arguments, then is asked to confirm them: bob's edit is not replayed as her answer.
    confirm = alice.runs.wait(thread, "assistant", command={"resume": {}})["__interrupt__"][0]["value"]  # type: ignore[index]
    assert (confirm["kind"], confirm["purpose"], "error" in confirm) == ("consent", "confirm_edit", False)
    assert confirm["action_requests"][0]["args"]["recipient"] == "Mallory Ltd"
    done = alice.runs.wait(thread, "assistant", command={"resume": {"decisions": [{"type": "approve"}]}})
    assert "__interrupt__" not in done and _tool_messages(done)[-1]["status"] == "success"  # type: ignore[arg-type]
    [(subject, _, _, _)] = _effects(db, "payments", thread)
    assert subject == "alice"
    events = [e for e, _, _ in _audit(db, thread)]
    assert "consent.refused" not in events and events.count("tool.started") == 1, _audit(db, thread)


def test_no_token_is_at_rest_in_checkpoints(project_url: str, sdk: Callable[..., SyncLangGraphClient], db: psycopg.Connection) -> None:
    token = login(project_url, "alice")
    with get_sync_client(url=project_url, api_key=None, headers=bearer(token)) as alice:
        thread, _ = _ask(alice, "open a ticket: the printer is out of toner")
    signature = token.rsplit(".", 1)[1]
    stored = db.execute(
        "SELECT string_agg(encode(blob, 'escape'), '') FROM checkpoint_blobs WHERE thread_id = %s", (thread,)
    ).fetchone()[0] or ""
    writes = db.execute(
        "SELECT string_agg(encode(blob, 'escape'), '') FROM checkpoint_writes WHERE thread_id = %s", (thread,)
    ).fetchone()[0] or ""
    assert stored and signature not in stored and signature not in writes
    assert claims_of(token)["sub"] == "alice"


def _effects(db: psycopg.Connection, api: str, thread: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT subject, actor, audience, scopes FROM mandate.demo_effects WHERE api = %s AND idempotency_key LIKE %s",
        (api, f"{thread}:%"),
    ).fetchall()
