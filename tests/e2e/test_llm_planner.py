"""With ``MANDATE_LLM_*`` set, ChatOpenAI plans with tool calling (against a wire-level double)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from mandate.audit import build_tracer_provider
from mandate.runtime.settings import DevSettings, Settings
from mandate.api.app import create_app
from tests.utils.openai_double import ChatDouble
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.threads import ask, bearer, last_answer, new_thread, resume
from tests.utils.tokens import login


@pytest.fixture(scope="module")
def double() -> Iterator[tuple[ChatDouble, str]]:
    model = ChatDouble(
        rules=[
            (r"projector", "create_ticket", {"title": "Projector broken in room 4", "priority": "high"}),
            (r"contract", "search_documents", {"query": "ACME contract terms payment liability"}),
        ]
    )
    with serve_in_thread(model.app()) as url:
        yield model, url


@pytest.fixture(scope="module")
def llm_app(stack_settings: Settings, double: tuple[ChatDouble, str]) -> Iterator[str]:
    """A second Mandate on the same Postgres and OpenFGA, planning with the LLM."""
    port = free_port()
    settings = DevSettings(
        env="test",
        port=port,
        data_dir=stack_settings.data_dir,
        database_url=stack_settings.database_url,
        fga_api_url=stack_settings.fga_api_url,
        llm_base_url=f"{double[1]}/v1",
        llm_api_key="sk-test-double",
        llm_model="double-1",
    )
    with serve_in_thread(create_app(settings, tracer_provider=build_tracer_provider()), port=port) as url:
        yield url


def test_llm_planner_proposes_tool_call_that_pauses_for_consent(
    llm_app: str, double: tuple[ChatDouble, str]
) -> None:
    model, _ = double
    alice = login(llm_app, "alice")
    with httpx.Client(base_url=llm_app, timeout=60) as client:
        thread = new_thread(client, alice)
        values = ask(client, alice, thread, "The projector in room 4 is broken, please get it fixed").json()
        action = values["__interrupt__"][0]["value"]["action_requests"][0]
        assert action == {
            "name": "create_ticket",
            "args": {"title": "Projector broken in room 4", "description": "", "priority": "high"},
            "description": "Allow create_ticket with these arguments?",
        }
        done = resume(client, alice, thread, {"decisions": [{"type": "approve"}]}).json()
    assert done["outcomes"][0]["status"] == "succeeded"
    planner_request = model.requests[0]["body"]
    assert {t["function"]["name"] for t in planner_request["tools"]} == {
        "search_documents", "create_ticket", "send_payment"
    }
    assert alice not in str(model.requests)


@pytest.mark.parametrize(("user", "expected"), [("alice", "ACME Master Services Agreement"), ("dave", "nothing")])
def test_llm_responder_sees_only_authorized_context(
    llm_app: str, double: tuple[ChatDouble, str], user: str, expected: str
) -> None:
    model, _ = double
    model.requests.clear()
    bearer_token = login(llm_app, user)
    with httpx.Client(base_url=llm_app, timeout=60) as client:
        values = ask(client, bearer_token, new_thread(client, bearer_token), "What does the contract say?").json()
    prompts = str([r["body"]["messages"] for r in model.requests])
    if expected == "nothing":
        assert "net 45" not in prompts
        assert "found no documents" in last_answer(values)
    else:
        assert "net 45" in prompts
        assert expected in last_answer(values)


def test_stream_modes_messages_and_debug_reach_the_client(llm_app: str) -> None:
    alice = login(llm_app, "alice")
    body = {
        "assistant_id": "mandate",
        "input": {"messages": [{"role": "user", "content": "What does the contract say?"}]},
        "stream_mode": ["messages-tuple", "debug", "custom"],
    }
    with httpx.Client(base_url=llm_app, timeout=60) as client:
        thread = new_thread(client, alice)
        with client.stream("POST", f"/threads/{thread}/runs/stream", json=body, headers=bearer(alice)) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [line.removeprefix("event: ").strip() for line in response.iter_lines() if line.startswith("event:")]
    assert events[0] == "metadata" and events[-1] == "end"
    assert "messages" in events and "debug" in events


def test_background_run_cancelled_mid_flight_can_be_continued(llm_app: str) -> None:
    alice = login(llm_app, "alice")
    body = {"input": {"messages": [{"role": "user", "content": "What does the contract say? take your time"}]}}
    with httpx.Client(base_url=llm_app, timeout=60) as client:
        thread = new_thread(client, alice)
        run = client.post(f"/threads/{thread}/runs", json=body, headers=bearer(alice)).json()
        deadline = time.monotonic() + 30
        while client.get(f"/threads/{thread}/runs/{run['run_id']}", headers=bearer(alice)).json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        cancelled = client.post(f"/threads/{thread}/runs/{run['run_id']}/cancel", headers=bearer(alice)).json()
        assert cancelled["status"] == "interrupted"
        state = client.get(f"/threads/{thread}/state", headers=bearer(alice)).json()
        assert state["next"]  # stopped between nodes, nothing lost
        assert client.get(f"/threads/{thread}", headers=bearer(alice)).json()["status"] == "interrupted"
