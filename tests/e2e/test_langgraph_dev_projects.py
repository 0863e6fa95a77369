"""The example projects run unchanged under ``langgraph dev`` (Studio's server), with Mandate's controls.

Each example folder is copied as it is and served by ``langgraph dev`` started in that folder (the
``cd examples/assistant && langgraph dev`` of the README), driven over HTTP with the official
``langgraph-sdk``. The issuer is a Mandate serving the same project (its dev issuer knows the
project's agents; its demo tickets API records every effect); the model is the loopback double.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from joserfc.jwk import RSAKey
from langgraph.runtime import Runtime
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from mandate.contract import GraphContext, MandateContextMissingError
from mandate.runtime.settings import Settings
from mandate.sdk import context as context_module
from mandate.sdk.context import graph_context, provide_context
from tests.utils.mcp_notes import NotesServer, notes_server
from tests.utils.openai_double import ChatDouble
from tests.utils.projects import EXAMPLES, served_project
from tests.utils.servers import free_port, serve_in_thread, wait_until_up
from tests.utils.threads import bearer
from tests.utils.tokens import claims_of, fresh_claims, login, sign, unsigned

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = "Summarize the latest contract terms for ACME."


class Studio(str):
    """The URL of a running ``langgraph dev``, with its process."""

    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Stop it gracefully (it writes out what it keeps on the way)."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@contextmanager
def langgraph_dev(example: str, folder: Path, *, settings: Settings, issuer_url: str, env: dict[str, str]) -> Iterator[Studio]:
    """``cd <copy of examples/<example>> && langgraph dev``, trusting ``issuer_url``'s dev issuer."""
    project = folder / example
    shutil.copytree(EXAMPLES / example, project, ignore=shutil.ignore_patterns("__pycache__", ".langgraph_api"))
    port = free_port()
    environment = {
        **os.environ, **env,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "true", "LANGSMITH_TRACING": "false",
        "MANDATE_ENV": "test", "MANDATE_DEV_ISSUER": "true", "MANDATE_PUBLIC_URL": issuer_url,
        "MANDATE_DATA_DIR": str(settings.data_dir), "MANDATE_DATABASE_URL": settings.database_url,
        "MANDATE_FGA_API_URL": settings.fga_api_url,
    }
    environment.pop("MANDATE_PROJECT", None)  # found from the folder langgraph dev serves
    log = (folder / f"langgraph-dev-{example}.log").open("ab")
    command = [
        str(Path(sys.executable).with_name("langgraph")), "dev", "--port", str(port), "--host", "127.0.0.1",
        "--no-browser", "--no-reload", "--allow-blocking",
    ]
    process = subprocess.Popen(command, cwd=project, env=environment, stdout=log, stderr=log)
    studio = Studio(f"http://127.0.0.1:{port}")
    studio.process = process
    try:
        wait_until_up(studio, process, log=log.name)
        yield studio
    finally:
        studio.stop()
        log.close()


def _client(url: str, token: str) -> SyncLangGraphClient:
    return get_sync_client(url=url, api_key=None, headers=bearer(token))


def _ask(client: SyncLangGraphClient, graph: str, text: str) -> tuple[str, dict[str, Any]]:
    thread = client.threads.create()["thread_id"]
    return thread, client.runs.wait(thread, graph, input={"messages": [{"role": "user", "content": text}]})  # type: ignore[return-value]


def _tool_messages(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in values["messages"] if m["type"] == "tool"]


def _effects(db: psycopg.Connection, thread: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT subject, actor, audience FROM mandate.demo_effects WHERE idempotency_key LIKE %s", (f"{thread}:%",)
    ).fetchall()


def _audit(db: psycopg.Connection, thread: str) -> list[tuple[str, str | None, str]]:
    return db.execute(
        "SELECT event, agent, decision FROM mandate.audit_records WHERE thread_id = %s ORDER BY seq", (thread,)
    ).fetchall()


def _status(call: Callable[[], Any]) -> int:
    with pytest.raises(httpx.HTTPStatusError) as refused:
        call()
    return refused.value.response.status_code


def _files_holding(folder: Path, needle: str) -> list[str]:
    """Files of LangGraph's local server (runs, checkpoints, store under ``.langgraph_api``) holding ``needle``."""
    return [str(f) for f in folder.rglob("*") if f.is_file() and needle.encode() in f.read_bytes()]


# -- examples/assistant: create_agent + MandateGate + McpTools ---------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("studio-projects")


@pytest.fixture(scope="module")
def model() -> Iterator[str]:
    double = ChatDouble(
        rules=[
            (r"convert", "convert_currency", {"amount": 100, "rate": 1.1}),
            (r"ticket", "open_ticket", {"title": "Studio projector broken", "priority": "high"}),
            (r"invoice", "pay_invoice", {"amount": 250.0, "currency": "EUR", "recipient": "Initech", "reference": "INV-9"}),
            (r"wipe", "delete_everything", {}),
            (r"note:", "add_note", {"text": "Buy milk"}),
        ]
    )
    with serve_in_thread(double.app()) as url:
        yield url


@pytest.fixture(scope="module")
def issuer_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def notes(issuer_port: int) -> Iterator[NotesServer]:
    with notes_server(issuer=f"http://127.0.0.1:{issuer_port}/dev-idp") as server:
        yield server


@pytest.fixture(scope="module")
def assistant_env(model: str, issuer_port: int, notes: NotesServer) -> dict[str, str]:
    issuer = f"http://127.0.0.1:{issuer_port}"
    return {
        "NOTES_MCP_URL": notes.url, "OPENAI_BASE_URL": f"{model}/v1", "OPENAI_API_KEY": "sk-test-double",
        "TICKETS_API_URL": f"{issuer}/demo/tickets", "PAYMENTS_API_URL": f"{issuer}/demo/payments",
    }


@pytest.fixture(scope="module")
def assistant_issuer(stack_settings: Settings, issuer_port: int, assistant_env: dict[str, str]) -> Iterator[str]:
    with served_project(stack_settings, "assistant", port=issuer_port, env=assistant_env) as url:
        yield url


@pytest.fixture(scope="module")
def assistant(stack_settings: Settings, folder: Path, assistant_issuer: str, assistant_env: dict[str, str]) -> Iterator[Studio]:
    with langgraph_dev("assistant", folder, settings=stack_settings, issuer_url=assistant_issuer, env=assistant_env) as url:
        yield url


def test_assistant_under_langgraph_dev_runs_ungated_and_denies_ungranted_and_unknown_tools(
    assistant: str, assistant_issuer: str, db: psycopg.Connection
) -> None:
    with _client(assistant, login(assistant_issuer, "alice")) as alice, _client(assistant, login(assistant_issuer, "carol")) as carol:
        assert {a["graph_id"] for a in alice.assistants.search()} == {"assistant"}
        thread, values = _ask(alice, "assistant", "convert 100 at 1.1")
        assert [m["content"] for m in _tool_messages(values)] == ["110.00"] and values["principal"]["subject"] == "alice"
        assert ("tool.succeeded", "agent:assistant", "ok") in _audit(db, thread)
        thread, values = _ask(carol, "assistant", "pay the invoice")
        assert "__interrupt__" not in values
        [denied] = _tool_messages(values)
        assert json.loads(denied["content"]) == {"status": "denied", "code": "user_not_allowed"}
        assert ("tool.denied", "agent:assistant", "user_not_allowed") in _audit(db, thread)
        thread, values = _ask(alice, "assistant", "wipe the disks")
        assert json.loads(_tool_messages(values)[0]["content"]) == {"status": "denied", "code": "unknown_tool"}


def test_assistant_under_langgraph_dev_asks_consent_in_hitl_shape_then_delegates_once(
    assistant: str, assistant_issuer: str, db: psycopg.Connection, notes: NotesServer
) -> None:
    alice_token = login(assistant_issuer, "alice")
    with _client(assistant, alice_token) as alice, _client(assistant, login(assistant_issuer, "dave")) as dave:
        thread, values = _ask(alice, "assistant", "open a ticket: the studio projector")
        [pause] = values["__interrupt__"]
        assert pause["value"]["kind"] == "consent" and pause["value"]["agent"] == "agent:assistant"
        assert pause["value"]["action_requests"] == [
            {"name": "open_ticket", "args": {"title": "Studio projector broken", "priority": "high"},
             "description": "Allow open_ticket with these arguments?"}
        ]
        assert _effects(db, thread) == []
        # dave (same tenant) can neither read alice's thread nor answer for her.
        assert _status(lambda: dave.threads.get(thread)) == 404
        approve = {"resume": {"decisions": [{"type": "approve"}]}}
        assert _status(lambda: dave.runs.wait(thread, "assistant", command=approve)) == 404
        assert _effects(db, thread) == []
        done = alice.runs.wait(thread, "assistant", command=approve)
        [answer] = _tool_messages(done)  # type: ignore[arg-type]
        assert answer["status"] == "success" and answer["content"].startswith("Ticket ")
        assert _effects(db, thread) == [("alice", "mandate-agent-assistant", f"{assistant_issuer}/demo/tickets")]
        assert ("tool.succeeded", "agent:assistant", "ok") in _audit(db, thread)

        # The MCP tool: consent, then a token exchanged for exactly the notes server, never alice's own.
        thread, values = _ask(alice, "assistant", "note: buy milk")
        assert values["__interrupt__"][0]["value"]["action_requests"][0]["name"] == "add_note"
        done = alice.runs.wait(thread, "assistant", command=approve)
        assert _tool_messages(done)[-1]["status"] == "success"  # type: ignore[arg-type]
    assert notes.notes["alice"] == ["Buy milk"]
    claims = notes.accepted[-1][1]
    assert (claims["sub"], claims["aud"], claims["act"]["sub"]) == ("alice", notes.url, "mandate-agent-assistant")
    assert alice_token not in [token for token, _ in notes.accepted]


def test_assistant_under_langgraph_dev_refuses_missing_forged_and_foreign_tokens(
    assistant: str, assistant_issuer: str, token: Callable[..., str]
) -> None:
    search = f"{assistant}/threads/search"
    assert httpx.post(search, json={}).status_code in (401, 403)
    assert httpx.post(search, json={}, headers={"x-auth-scheme": "langsmith"}).status_code in (401, 403)
    real = login(assistant_issuer, "alice")
    forged = sign(fresh_claims(claims_of(real), sub="bob"), RSAKey.generate_key(2048, parameters={"kid": "attacker"}))
    for bad in ("not-a-jwt", unsigned(fresh_claims(claims_of(real), sub="bob")), forged, token("alice")):
        # the last: a real token, but from another Mandate's issuer this server does not trust
        assert httpx.post(search, json={}, headers=bearer(bad)).status_code == 401, bad[:20]


def test_assistant_under_langgraph_dev_takes_no_principal_context_or_state_from_the_client(
    assistant: str, assistant_issuer: str
) -> None:
    alice_state = {"issuer": f"{assistant_issuer}/dev-idp", "issuer_key": "dev", "subject": "alice", "tenant": "acme",
                   "roles": [], "groups": [], "client_id": "mandate-cli"}
    text = {"role": "user", "content": "convert 100 at 1.1"}
    with _client(assistant, login(assistant_issuer, "carol")) as carol:
        thread = carol.threads.create()["thread_id"]
        assert _status(lambda: carol.runs.wait(thread, "assistant", input={"messages": [text], "principal": alice_state})) == 422
        assert _status(lambda: carol.runs.wait(thread, "assistant", input={"messages": [text]}, context={"caller": alice_state})) == 422
        # A configurable naming another user is overwritten by the server's verified one.
        values = carol.runs.wait(
            thread, "assistant", input={"messages": [text]},
            config={"configurable": {"langgraph_auth_user": {**alice_state, "identity": "alice", "permissions": []}}},
        )
        assert values["principal"]["subject"] == "carol"  # type: ignore[index]
        assert json.loads(_tool_messages(values)[0]["content"]) == {"status": "denied", "code": "user_not_allowed"}  # type: ignore[arg-type]
        # The state (the requester, the conversation) is written by runs only.
        assert _status(lambda: carol.threads.update_state(thread, {"principal": alice_state})) == 403
        assert carol.threads.get_state(thread)["values"]["principal"]["subject"] == "carol"


# -- examples/research_desk: StateGraph + secured_tool_node + retrieve_authorized + narrowing auth ---


@pytest.fixture(scope="module")
def desk_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def desk_env(desk_port: int) -> dict[str, str]:
    return {"TICKETS_API_URL": f"http://127.0.0.1:{desk_port}/demo/tickets"}


@pytest.fixture(scope="module")
def desk_issuer(stack_settings: Settings, desk_port: int, desk_env: dict[str, str]) -> Iterator[str]:
    with served_project(stack_settings, "research_desk", port=desk_port, env=desk_env) as url:
        yield url


@pytest.fixture(scope="module")
def desk(stack_settings: Settings, folder: Path, desk_issuer: str, desk_env: dict[str, str]) -> Iterator[Studio]:
    with langgraph_dev("research_desk", folder, settings=stack_settings, issuer_url=desk_issuer, env=desk_env) as url:
        yield url


def test_desk_under_langgraph_dev_retrieves_only_what_user_and_agent_may_read(desk: str, desk_issuer: str) -> None:
    with _client(desk, login(desk_issuer, "alice")) as alice, _client(desk, login(desk_issuer, "dave")) as dave:
        _, values = _ask(alice, "desk", CONTRACTS)
        assert "ACME Master Services Agreement" in values["messages"][-1]["content"]
        assert all(chunk["doc_id"] != "acme-payroll" for chunk in values["context"])
        _, values = _ask(dave, "desk", CONTRACTS)
        assert values["context"] == [] and "no documents" in values["messages"][-1]["content"]


def test_desk_under_langgraph_dev_waits_for_consent_then_opens_one_ticket_as_the_desk(
    desk: str, desk_issuer: str, db: psycopg.Connection
) -> None:
    with _client(desk, login(desk_issuer, "alice")) as alice:
        thread, values = _ask(alice, "desk", "Please open a ticket: the contract archive is unreachable")
        request = values["__interrupt__"][0]["value"]
        assert (request["kind"], request["agent"], request["action_requests"][0]["name"]) == ("consent", "agent:desk", "open_ticket")
        assert _effects(db, thread) == []
        done = alice.runs.wait(thread, "desk", command={"resume": {"decisions": [{"type": "approve"}]}})
        assert str(done["messages"][-1]["content"]).startswith("Ticket ")  # type: ignore[index]
        assert _effects(db, thread) == [("alice", "mandate-agent-desk", f"{desk_issuer}/demo/tickets")]


def test_desk_under_langgraph_dev_narrows_with_the_projects_handler_but_never_widens(desk: str, desk_issuer: str) -> None:
    with (
        _client(desk, login(desk_issuer, "alice")) as alice,
        _client(desk, login(desk_issuer, "dave")) as dave,
        _client(desk, login(desk_issuer, "carol")) as carol,
    ):
        # acme_only: Mandate lets carol (globex) create threads; the desk's own handler does not.
        assert _status(lambda: carol.threads.create()) == 403
        # anyone_may_read tries to widen reading to every thread: Mandate's owner filter still holds.
        thread, _ = _ask(alice, "desk", CONTRACTS)
        assert _status(lambda: dave.threads.get(thread)) == 404
        assert thread not in {t["thread_id"] for t in dave.threads.search(limit=100)}
        assert alice.threads.get(thread)["thread_id"] == thread


# Last: it stops both servers, which makes LangGraph's local server write out everything it keeps.
def test_no_token_is_at_rest_in_langgraph_devs_runs_checkpoints_or_store(
    folder: Path, assistant: Studio, assistant_issuer: str, desk: Studio, desk_issuer: str, db: psycopg.Connection
) -> None:
    tokens = [login(assistant_issuer, "alice"), login(desk_issuer, "alice")]
    with _client(assistant, tokens[0]) as alice:
        thread, values = _ask(alice, "assistant", "open a ticket: the printer is out of toner")
        assert values["__interrupt__"][0]["value"]["kind"] == "consent"
        alice.runs.wait(thread, "assistant", command={"resume": {"decisions": [{"type": "approve"}]}})
        history = alice.threads.get_history(thread, limit=50)
    assert len(_effects(db, thread)) == 1
    with _client(desk, tokens[1]) as alice:
        _ask(alice, "desk", CONTRACTS)
    assistant.stop()
    desk.stop()
    signatures = [t.rsplit(".", 1)[1] for t in tokens]
    assert all(s not in json.dumps(history) for s in signatures)
    kept = [f for name in ("assistant", "research_desk") for f in (folder / name / ".langgraph_api").rglob("*") if f.is_file()]
    assert kept  # the runs, threads and checkpoints LangGraph's server wrote out
    assert [f for s in signatures for f in _files_holding(folder, s)] == []
    # Nor in Mandate's vault: the token went from the request to its run in memory.
    issuers = [f"{assistant_issuer}/dev-idp", f"{desk_issuer}/dev-idp"]
    assert db.execute("SELECT count(*) FROM mandate.token_vault WHERE issuer = ANY(%s)", (issuers,)).fetchone() == (0,)


# -- the resolver itself: a context no one verified is never taken -------------------------------------


async def test_graph_context_refuses_a_context_coerced_from_a_clients_json() -> None:
    fields = {f.name: {"forged": True} for f in dataclasses.fields(GraphContext)}
    coerced = GraphContext(**{**fields, "caller": {"subject": "alice", "tenant": "acme"}})  # what LangGraph builds from JSON
    with pytest.raises(MandateContextMissingError):
        await graph_context(Runtime(context=coerced))


async def test_graph_context_without_mandates_context_or_provider_fails_closed() -> None:
    import mandate.runtime.studio  # noqa: F401  (registers the provider, as langgraph dev's import of its auth does)

    # The provider stands behind runs of the LangGraph server only: a config without its verified user is refused.
    for config in ({"configurable": {}}, {"configurable": {"thread_id": "t", "run_id": "r", "langgraph_auth_user": None}}):
        with pytest.raises(MandateContextMissingError):
            await graph_context(Runtime(context={"caller": "alice"}), config=config)  # type: ignore[arg-type]
    saved = list(context_module._provider)
    provide_context(None)
    try:
        with pytest.raises(MandateContextMissingError):
            await graph_context(Runtime(context=None), config={"configurable": {"langgraph_auth_user": {"subject": "alice"}}})
    finally:
        context_module._provider[:] = saved
