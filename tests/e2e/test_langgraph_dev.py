"""``langgraph dev`` (LangGraph Studio's local server) runs Mandate's graphs behind Mandate's auth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client

from mandate.runtime.settings import Settings
from mandate.runtime.studio import SERVICES_CLOSED, SERVICES_OPENED
from tests.utils.servers import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
TICKET = "Open a ticket: the lamp in room 5 is broken"


@pytest.fixture(scope="module")
def studio(stack_settings: Settings, base_url: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``langgraph dev`` offline, trusting the dev issuer of the service under test: its URL and process."""
    port = free_port()
    env = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LANGSMITH_TRACING": "false",
        "MANDATE_ENV": "test",
        "MANDATE_DEV_ISSUER": "true",
        "MANDATE_PUBLIC_URL": base_url,
        "MANDATE_DATA_DIR": str(stack_settings.data_dir),
        "MANDATE_DATABASE_URL": stack_settings.database_url,
        "MANDATE_FGA_API_URL": stack_settings.fga_api_url,
    }
    log = (Path(stack_settings.data_dir) / "langgraph-dev.log").open("ab")
    command = [
        str(Path(sys.executable).with_name("langgraph")), "dev", "--config", "langgraph.json", "--port", str(port),
        "--host", "127.0.0.1", "--no-browser", "--no-reload", "--allow-blocking",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log=log.name)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def studio_url(studio: tuple[str, subprocess.Popen[bytes]]) -> str:
    """The URL of ``langgraph dev``."""
    return studio[0]


async def test_langgraph_dev_runs_graphs_for_a_verified_user(studio_url: str, token: Callable[..., str]) -> None:
    async with get_client(url=studio_url, api_key=None, headers={"Authorization": f"Bearer {token('alice')}"}) as alice:
        assert {a["graph_id"] for a in await alice.assistants.search()} == {"mandate", "supervisor"}
        thread = await alice.threads.create()
        answer = await alice.runs.wait(
            thread["thread_id"], "mandate",
            input={"messages": [{"role": "user", "content": "Summarize the latest contract terms for ACME."}]},
        )
        assert "net 45" in answer["messages"][-1]["content"]
        assert answer["principal"]["subject"] == "alice"
        graph = await alice.assistants.get_graph("supervisor", xray=True)
        assert "supervisor" in str(graph)


async def test_langgraph_dev_delegates_once_keeps_tokens_out_and_threads_private(
    studio_url: str, token: Callable[..., str], db: psycopg.Connection
) -> None:
    alice_token = token("alice")
    async with (
        get_client(url=studio_url, api_key=None, headers={"Authorization": f"Bearer {alice_token}"}) as alice,
        get_client(url=studio_url, api_key=None, headers={"Authorization": f"Bearer {token('bob')}"}) as bob,
    ):
        thread = await alice.threads.create()
        paused = await alice.runs.wait(thread["thread_id"], "mandate", input={"messages": [{"role": "user", "content": TICKET}]})
        assert paused["__interrupt__"][0]["value"]["kind"] == "consent"
        # bob can neither read nor resume alice's thread.
        with pytest.raises(httpx.HTTPStatusError) as hidden:
            await bob.threads.get(thread["thread_id"])
        assert hidden.value.response.status_code == 404
        with pytest.raises(httpx.HTTPStatusError) as not_his:
            await bob.runs.wait(thread["thread_id"], "mandate", command={"resume": {"decisions": [{"type": "approve"}]}})
        assert not_his.value.response.status_code == 404
        assert thread["thread_id"] not in {t["thread_id"] for t in await bob.threads.search(limit=100)}
        resumed = await alice.runs.wait(
            thread["thread_id"], "mandate", command={"resume": {"decisions": [{"type": "approve"}]}}
        )
        # The run's token was handed over in memory: the executor exchanged it, once, as alice.
        assert "__interrupt__" not in resumed, resumed
        effects = db.execute(
            "SELECT subject, actor FROM mandate.demo_effects WHERE api = 'tickets' AND idempotency_key LIKE %s",
            (f"{thread['thread_id']}:%",),
        ).fetchall()
        assert effects == [("alice", "agent-executor")]
        state = await alice.threads.get_state(thread["thread_id"])
    signature = alice_token.rsplit(".", 1)[1]
    assert signature not in json.dumps(state) and signature not in json.dumps(resumed)
    assert not _at_rest(ROOT / ".langgraph_api", signature)
    assert db.execute("SELECT count(*) FROM mandate.token_vault WHERE subject = 'alice' AND thread_id LIKE 'run:%%'").fetchone() == (0,)


def _at_rest(folder: Path, needle: str) -> list[str]:
    """The files under ``folder`` (LangGraph's local runs, checkpoints and store) holding ``needle``."""
    return [str(f) for f in folder.rglob("*") if f.is_file() and needle.encode() in f.read_bytes()] if folder.exists() else []


def test_langgraph_dev_refuses_missing_token_and_the_studio_bypass(studio_url: str) -> None:
    assert httpx.post(f"{studio_url}/threads/search", json={}).status_code in (401, 403)
    bypass = httpx.post(f"{studio_url}/threads/search", json={}, headers={"x-auth-scheme": "langsmith"})
    assert bypass.status_code in (401, 403)
    forged = httpx.post(f"{studio_url}/threads/search", json={}, headers={"Authorization": "Bearer not-a-jwt"})
    assert forged.status_code == 401


async def test_langgraph_dev_refuses_a_client_supplied_principal(studio_url: str, token: Callable[..., str]) -> None:
    async with get_client(url=studio_url, api_key=None, headers={"Authorization": f"Bearer {token('carol')}"}) as carol:
        thread = await carol.threads.create()
        spoofed = {"subject": "alice", "tenant": "acme", "issuer": "x", "issuer_key": "dev", "roles": [], "groups": [], "client_id": ""}
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await carol.runs.wait(
                thread["thread_id"], "mandate",
                input={"messages": [{"role": "user", "content": "Summarize the latest contract terms for ACME."}], "principal": spoofed},
            )
        assert refused.value.response.status_code == 422
        answer = await carol.runs.wait(
            thread["thread_id"], "mandate",
            input={"messages": [{"role": "user", "content": "Summarize the latest contract terms for ACME."}]},
        )
        assert answer["principal"]["subject"] == "carol" and answer["principal"]["tenant"] == "globex"
        assert "net 45" not in answer["messages"][-1]["content"]


async def test_langgraph_dev_refuses_state_updates_jumps_and_forks_in_a_run(studio_url: str, token: Callable[..., str]) -> None:
    """A run may answer a pause; it may not write state (an approval), jump to a node, or fork from an old checkpoint."""
    ask = {"messages": [{"role": "user", "content": "Open a ticket: the lamp in room 7 is broken"}]}
    async with get_client(url=studio_url, api_key=None, headers={"Authorization": f"Bearer {token('alice')}"}) as alice:
        thread = (await alice.threads.create())["thread_id"]
        paused = await alice.runs.wait(thread, "mandate", input=ask)
        assert paused["__interrupt__"][0]["value"]["kind"] == "consent"
        history = await alice.threads.get_history(thread, limit=10)
        for forged in (
            {"command": {"update": {"approved": paused["proposed"]}, "resume": {"decisions": [{"type": "approve"}]}}},
            {"command": {"goto": "tool_executor"}},
            {"command": {"resume": {"decisions": [{"type": "approve"}]}}, "checkpoint_id": history[-1]["checkpoint_id"]},
        ):
            with pytest.raises(httpx.HTTPStatusError) as refused:
                await alice.runs.wait(thread, "mandate", **forged)
            assert refused.value.response.status_code == 422, forged
        state = await alice.threads.get_state(thread)
        assert not state["values"].get("outcomes")  # nothing ran


async def test_langgraph_dev_opens_mandates_services_once_per_process(
    studio_url: str, token: Callable[..., str], stack_settings: Settings
) -> None:
    async with get_client(url=studio_url, api_key=None, headers={"Authorization": f"Bearer {token('dave')}"}) as dave:
        for _ in range(3):
            thread = await dave.threads.create()
            answer = await dave.runs.wait(
                thread["thread_id"], "mandate",
                input={"messages": [{"role": "user", "content": "Summarize the latest contract terms for ACME."}]},
            )
            assert answer["principal"]["subject"] == "dave" and "net 45" not in answer["messages"][-1]["content"]
        assert "supervisor" in str(await dave.assistants.get_graph("supervisor"))
    log = (Path(stack_settings.data_dir) / "langgraph-dev.log").read_text(errors="replace")
    assert log.count(SERVICES_OPENED) == 1  # every run and graph request of this process shares one pool


# Last in this module: it stops the module's server.
async def test_langgraph_dev_closes_mandates_services_when_it_stops(
    studio: tuple[str, subprocess.Popen[bytes]], token: Callable[..., str], stack_settings: Settings
) -> None:
    url, process = studio
    async with get_client(url=url, api_key=None, headers={"Authorization": f"Bearer {token('carol')}"}) as carol:
        thread = await carol.threads.create()
        await carol.runs.wait(thread["thread_id"], "mandate", input={"messages": [{"role": "user", "content": "Hello"}]})
    process.terminate()  # uvicorn shuts down gracefully, then ends by the signal it got
    process.wait(timeout=30)
    log = (Path(stack_settings.data_dir) / "langgraph-dev.log").read_text(errors="replace")
    assert log.count(SERVICES_CLOSED) == 1 and log.rindex(SERVICES_CLOSED) > log.rindex(SERVICES_OPENED)
