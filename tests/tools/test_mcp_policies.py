"""``mcp_servers`` and ``tools[].mcp`` in ``mandate.yaml``: an MCP tool's audience is its server, and
a graph's ``McpTools("<server>")`` finds only a configured server, and runs only under Mandate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from mandate.contract import MandateContextMissingError
from mandate.runtime.errors import ProjectError
from mandate.runtime.project import load_project
from mandate.sdk import McpTools
from mandate.tools import ToolError

GRAPH = """
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from mandate.sdk import GraphContext, MandateGate, McpTools

def make_graph():
    return create_agent(FakeListChatModel(responses=["ok"]), tools=[],
                        middleware=[MandateGate(agent="assistant"), McpTools("{server}", agent="assistant")],
                        context_schema=GraphContext)
"""

POLICIES = """
tools:
  - name: save_note
    mcp: {server: notes, tool: add_note}
    scopes: [notes:write]
mcp_servers:
  notes: {url: "https://notes.example.com/mcp", list_scopes: [notes:read]}
agents:
  assistant: {client_id: mandate-agent-assistant, tools: [save_note]}
"""


def _project(tmp_path: Path, policies: str, *, server: str = "notes") -> Path:
    (tmp_path / "agent.py").write_text(GRAPH.replace("{server}", server))
    (tmp_path / "mandate.yaml").write_text(policies)
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"assistant": "./agent.py:make_graph"}}))
    return config


def test_mcp_tool_audience_is_its_servers_url_and_its_name_maps_to_the_policy(tmp_path: Path) -> None:
    project = load_project(_project(tmp_path, POLICIES))
    [spec] = project.tool_specs()
    assert (spec.name, spec.audience, spec.scopes) == ("save_note", "https://notes.example.com/mcp", ("notes:write",))
    [server] = project.mcp_servers().values()
    assert (server.url, server.list_scopes, dict(server.tools)) == ("https://notes.example.com/mcp", ("notes:read",), {"add_note": "save_note"})


async def test_a_graph_using_a_configured_mcp_server_compiles(tmp_path: Path) -> None:
    graphs = await load_project(_project(tmp_path, POLICIES)).compiled(InMemorySaver())
    assert set(graphs) == {"assistant"}


async def test_a_graph_naming_an_unconfigured_mcp_server_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match=r"MCP server 'calendar' is not configured"):
        await load_project(_project(tmp_path, POLICIES, server="calendar")).compiled(InMemorySaver())


@pytest.mark.parametrize(
    ("policies", "key", "problem"),
    [
        (POLICIES.replace("{server: notes, tool: add_note}", "{server: calendar}"), "tools.0.mcp.server", "'calendar' has no entry under mcp_servers"),
        (POLICIES.replace("    scopes: [notes:write]", "    scopes: [notes:write]\n    audience: https://other.example.com/api"), "tools.0.audience", "an MCP tool's audience is its server's url"),
        (POLICIES.replace("https://notes.example.com/mcp", "file:///etc/passwd"), "mcp_servers.notes.url", "String should match pattern"),
        (POLICIES.replace("list_scopes: [notes:read]", "list_scopes: [notes:read], token: secret"), "mcp_servers.notes.token", "Extra inputs are not permitted"),
    ],
)
def test_a_wrong_mcp_entry_is_refused_naming_the_key(tmp_path: Path, policies: str, key: str, problem: str) -> None:
    with pytest.raises(ProjectError) as refused:
        load_project(_project(tmp_path, policies))
    assert "mandate.yaml" in str(refused.value) and problem in str(refused.value)
    assert key in str(refused.value)


async def test_mcp_tools_built_outside_mandate_build_but_refuse_to_run() -> None:
    """``langgraph dev`` can build the graph; its MCP tools run only under Mandate."""
    tools = McpTools("notes", agent="assistant")
    assert tools.name == "McpTools[notes]" and tools.server is None
    with pytest.raises(MandateContextMissingError):
        await tools._listed(None)
