"""Authorized retrieval as LangChain pieces in a team's project: the ``authorized_search`` tool under
``MandateGate`` and the ``AuthorizedDocuments`` retriever in a hand-built graph. Each returns only what
the requester AND the agent may read (the agent ``librarian`` reads ACME's contracts folder only)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain.tools import ToolRuntime
from langgraph_sdk.client import SyncLangGraphClient
from pydantic import ValidationError

from mandate.contract import MandateContextMissingError
from mandate.runtime.settings import Settings
from mandate.sdk import AuthorizedDocuments, authorized_search
from tests.utils.openai_double import ChatDouble
from tests.utils.projects import sdk_clients, served_project
from tests.utils.servers import free_port, serve_in_thread

PROJECT = Path(__file__).parent / "projects" / "library" / "langgraph.json"
CONTRACTS = {"ACME Master Services Agreement", "Vendor notice: updated bank details"}
QUESTION = "search: master services agreement, payroll, roadmap, supply terms"


@pytest.fixture(scope="module")
def library_url(stack_settings: Settings) -> Iterator[str]:
    double = ChatDouble(rules=[(r"search", "search_documents", {"query": QUESTION})])
    with serve_in_thread(double.app()) as model_url:
        port = free_port()
        env = {"OPENAI_BASE_URL": f"{model_url}/v1", "OPENAI_API_KEY": "sk-test-double"}
        with served_project(stack_settings, PROJECT, port=port, env=env) as url:
            yield url


@pytest.fixture
def sdk(library_url: str) -> Iterator[Callable[..., SyncLangGraphClient]]:
    with sdk_clients(library_url) as signed_in:
        yield signed_in  # type: ignore[misc]


def _run(client: SyncLangGraphClient, graph: str) -> dict[str, Any]:
    thread = client.threads.create()["thread_id"]
    return client.runs.wait(thread, graph, input={"messages": [{"role": "user", "content": QUESTION}]})  # type: ignore[return-value]


def _found(values: dict[str, Any]) -> tuple[str, Any]:
    [message] = [m for m in values["messages"] if m["type"] == "tool"]
    return message["status"], json.loads(message["content"])


def test_the_search_tool_returns_what_the_user_and_the_agent_may_both_read(sdk: Callable[..., SyncLangGraphClient]) -> None:
    status, found = _found(_run(sdk("alice"), "librarian"))
    assert status == "success"
    titles = {hit["title"] for hit in found}
    assert titles and titles <= CONTRACTS  # not the roadmap, not Globex
    _, found = _found(_run(sdk("bob"), "librarian"))
    assert {hit["title"] for hit in found} <= CONTRACTS  # bob may read the payroll; the librarian may not


def test_a_user_outside_the_agents_folders_gets_nothing_though_the_agent_could_read_it(sdk: Callable[..., SyncLangGraphClient]) -> None:
    status, found = _found(_run(sdk("dave"), "librarian"))  # engineering: not a viewer of contracts
    assert (status, found) == ("success", [])


def test_a_user_not_granted_the_search_tool_is_denied_before_it_searches(sdk: Callable[..., SyncLangGraphClient]) -> None:
    status, refusal = _found(_run(sdk("carol"), "librarian"))  # globex: no can_use on the tool
    assert status == "error" and refusal == {"status": "denied", "code": "user_not_allowed"}


def test_the_retriever_in_a_hand_built_graph_keeps_to_user_and_agent(sdk: Callable[..., SyncLangGraphClient]) -> None:
    assert set(_run(sdk("alice"), "reader")["titles"]) <= CONTRACTS
    assert _run(sdk("alice"), "reader")["titles"]
    # bob may read the payroll and the contracts; the librarian may read the contracts only.
    assert set(_run(sdk("bob"), "reader")["titles"]) <= CONTRACTS
    assert _run(sdk("dave"), "reader")["titles"] == []


async def test_the_tool_and_the_retriever_refuse_to_run_outside_mandate() -> None:
    with pytest.raises(ValueError, match="k must be"):
        authorized_search(agent="librarian", k=0)
    outside = ToolRuntime(state={"principal": {"tenant": "acme"}}, context=None, config={}, stream_writer=None, tool_call_id="c1", store=None)
    call = {"type": "tool_call", "id": "c1", "name": "search_documents", "args": {"query": "anything", "runtime": outside}}
    with pytest.raises(MandateContextMissingError):
        await authorized_search(agent="librarian").ainvoke(call)
    with pytest.raises(ValidationError, match="not Mandate's runtime context"):
        AuthorizedDocuments(context={"caller": "forged"}, requester={"tenant": "acme"}, agent="librarian")
