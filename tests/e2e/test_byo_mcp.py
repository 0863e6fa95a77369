"""A remote MCP server's tools in a team's ``create_agent`` project (``examples/assistant`` with
``examples/mcp_notes``), driven with the official ``langgraph-sdk``: each MCP call is gated like any
tool and reaches the server only with a token delegated for exactly that server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from langgraph_sdk.client import SyncLangGraphClient

from mandate.runtime.settings import Settings
from tests.e2e.test_byo_agent import _ask, _audit, _tool_messages, model, notes, project_port, project_url, sdk  # noqa: F401
from tests.utils.mcp_notes import NotesServer, notes_server
from tests.utils.openai_double import ChatDouble
from tests.utils.projects import served_project
from tests.utils.servers import free_port
from tests.utils.threads import bearer
from tests.utils.tokens import login


def test_mcp_tools_are_listed_with_a_delegated_token_and_offered_to_the_model(
    project_url: str, sdk: Callable[..., SyncLangGraphClient], notes: NotesServer, model: tuple[ChatDouble, str]
) -> None:
    _ask(sdk("alice"), "convert 100 at 1.1")
    offered = {t["function"]["name"] for request in model[0].requests for t in request["body"].get("tools", [])}
    assert {"add_note", "delete_notes", "list_notes", "convert_currency"} <= offered
    listing = [claims for _, claims in notes.accepted if claims["scope"] == "notes:read"]
    assert listing and all(c["aud"] == notes.url and c["act"] == {"sub": "mandate-agent-assistant"} for c in listing)


def test_mcp_tool_under_consent_runs_once_with_a_token_for_exactly_that_server(
    project_url: str, sdk: Callable[..., SyncLangGraphClient], notes: NotesServer, db: psycopg.Connection
) -> None:
    alice = sdk("alice")
    thread, values = _ask(alice, "note: buy milk")
    [pause] = values["__interrupt__"]
    assert pause["value"]["kind"] == "consent"
    assert pause["value"]["action_requests"][0]["name"] == "add_note"
    assert notes.notes.get("alice") is None  # nothing ran while it waited
    dave = httpx.post(
        f"{project_url}/threads/{thread}/runs/wait", headers=bearer(login(project_url, "dave")),
        json={"command": {"resume": {"decisions": [{"type": "approve"}]}}}, timeout=30,
    )
    assert dave.status_code == 404  # another user cannot consent for alice

    before = len(notes.accepted)
    done = alice.runs.wait(thread, "assistant", command={"resume": {"decisions": [{"type": "approve"}]}})
    [answer] = _tool_messages(done)  # type: ignore[arg-type]
    assert answer["status"] == "success" and "Note 1 saved." in json.dumps(answer["content"])
    assert notes.notes["alice"] == ["Buy milk"]
    # one session (initialize, call, close) of several HTTP requests, all with the same delegated token
    [call] = list({raw: claims for raw, claims in notes.accepted[before:] if "notes:write" in claims["scope"].split()}.values())
    assert (call["sub"], call["act"], call["aud"]) == ("alice", {"sub": "mandate-agent-assistant"}, notes.url)
    assert sorted(call["scope"].split()) == ["notes:read", "notes:write"]  # not alice's other scopes
    replay = httpx.post(
        f"{project_url}/threads/{thread}/runs/wait", headers=bearer(login(project_url, "alice")),
        json={"command": {"resume": {"decisions": [{"type": "approve"}]}}}, timeout=30,
    )
    assert replay.status_code == 409 and notes.notes["alice"] == ["Buy milk"]
    events = _audit(db, thread)
    assert ("tool.started", "agent:assistant", "allowed") in events and ("tool.succeeded", "agent:assistant", "ok") in events
    # the delegated token is nowhere at rest: not in the thread's checkpoints nor its pending writes
    signature = next(raw for raw, claims in notes.accepted[before:] if claims is call).rsplit(".", 1)[1]
    at_rest = db.execute(
        "SELECT coalesce((SELECT string_agg(encode(blob, 'escape'), '') FROM checkpoint_blobs WHERE thread_id = %s), '')"
        " || coalesce((SELECT string_agg(encode(blob, 'escape'), '') FROM checkpoint_writes WHERE thread_id = %s), '')",
        (thread, thread),
    ).fetchone()[0]
    assert "Buy milk" in at_rest and signature not in at_rest


def test_an_mcp_tool_no_policy_names_is_denied_and_audited(
    project_url: str, sdk: Callable[..., SyncLangGraphClient], notes: NotesServer, db: psycopg.Connection
) -> None:
    notes.notes["alice"] = ["keep me"]
    thread, values = _ask(sdk("alice"), "forget my notes")
    [answer] = _tool_messages(values)
    assert json.loads(answer["content"]) == {"status": "denied", "code": "unknown_tool"}
    assert ("tool.denied", "agent:assistant", "unknown_tool") in _audit(db, thread)
    assert notes.notes["alice"] == ["keep me"]


def test_a_user_without_the_grant_is_denied_an_mcp_tool(
    project_url: str, sdk: Callable[..., SyncLangGraphClient], notes: NotesServer, db: psycopg.Connection
) -> None:
    thread, values = _ask(sdk("carol"), "note: globex secrets")
    [answer] = _tool_messages(values)
    assert json.loads(answer["content"]) == {"status": "denied", "code": "user_not_allowed"}
    assert "carol" not in notes.notes


def test_the_users_own_token_never_reaches_the_mcp_server(
    project_url: str, sdk: Callable[..., SyncLangGraphClient], notes: NotesServer
) -> None:
    token = login(project_url, "alice")
    alice = sdk("alice")
    thread, _ = _ask(alice, "note: call the bank")
    alice.runs.wait(thread, "assistant", command={"resume": {"decisions": [{"type": "approve"}]}})
    assert notes.accepted and all("act" in claims and claims["aud"] == notes.url for _, claims in notes.accepted)
    assert notes.received and f"Bearer {token}" not in notes.received
    assert set(notes.received) == {f"Bearer {raw}" for raw, _ in notes.accepted}  # it was sent nothing it refused
    # and the server itself refuses it: a user's token is for Mandate, not for the notes server
    # (this test's own request, last, after the assertions on what Mandate sent)
    refused = httpx.post(notes.url, headers={**bearer(token), "Accept": "application/json, text/event-stream"},
                         json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10)
    assert refused.status_code == 401


@pytest.fixture(scope="module")
def refused(stack_settings: Settings, model: tuple[ChatDouble, str]) -> Iterator[tuple[str, NotesServer]]:
    """The example project served with a notes server whose metadata names another resource."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with notes_server(issuer=f"{url}/dev-idp", believed_url=f"http://127.0.0.1:{free_port()}/mcp") as misconfigured:
        env = {
            "NOTES_MCP_URL": misconfigured.url, "OPENAI_BASE_URL": f"{model[1]}/v1", "OPENAI_API_KEY": "sk-test-double",
            "TICKETS_API_URL": f"{url}/demo/tickets", "PAYMENTS_API_URL": f"{url}/demo/payments",
        }
        with served_project(stack_settings, "assistant", port=port, env=env) as served:
            yield served, misconfigured


def test_a_server_whose_metadata_names_another_resource_is_refused_and_sent_no_token(refused: tuple[str, NotesServer]) -> None:
    url, misconfigured = refused
    alice = bearer(login(url, "alice"))
    thread = httpx.post(f"{url}/threads", headers=alice, json={}, timeout=30).json()["thread_id"]
    answer = httpx.post(
        f"{url}/threads/{thread}/runs/wait", headers=alice, timeout=60,
        json={"assistant_id": "assistant", "input": {"messages": [{"role": "user", "content": "convert 100 at 1.1"}]}},
    )
    assert answer.status_code == 502 and answer.json()["code"] == "mcp_server_refused"
    assert "mcp_servers.notes" in answer.text and "eyJ" not in answer.text
    assert misconfigured.received == [] and misconfigured.accepted == []
