"""Loading a project: the LangGraph spec rules, the mandate.yaml schema, and errors that name file, key and fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from mandate.auth import Principal
from mandate.runtime.errors import ProjectAuthRefusedError, ProjectError
from mandate.runtime.project import MANDATE_AUTH, load_project
from mandate.tools import ApprovalPolicy

GRAPH_MODULE = '''
from typing_extensions import TypedDict
from langgraph.graph import StateGraph, START, END

class State(TypedDict):
    n: int

def _builder():
    graph = StateGraph(State)
    graph.add_node("inc", lambda s: {"n": s["n"] + 1})
    graph.add_edge(START, "inc")
    graph.add_edge("inc", END)
    return graph

builder = _builder()
compiled = _builder().compile()

def factory(config):
    assert "configurable" in config
    return _builder()

async def async_factory():
    return _builder().compile()

with_saver = _builder().compile(checkpointer=__import__("langgraph.checkpoint.memory", fromlist=["x"]).InMemorySaver())
not_a_graph = 42
'''
POLICIES = """
tools:
  - name: open_ticket
    audience: ${TEST_TICKETS_URL}
    scopes: [tickets:write]
    approval: {policy: user_consent, ttl: 600}
agents:
  helper:
    client_id: helper-client
    client_secret_env: TEST_HELPER_SECRET
    tools: [open_ticket]
"""


def _project(tmp_path: Path, graphs: dict[str, object], policies: str | None = POLICIES, **extra: object) -> Path:
    (tmp_path / "graphs.py").write_text(GRAPH_MODULE)
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": graphs, **extra}))
    if policies is not None:
        (tmp_path / "mandate.yaml").write_text(policies)
    return config


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TICKETS_URL", "https://tickets.example.com/tickets")
    monkeypatch.setenv("TEST_HELPER_SECRET", "s3cret")


async def test_every_kind_of_graph_spec_is_compiled_with_mandates_checkpointer(tmp_path: Path) -> None:
    config = _project(tmp_path, {
        "builder": "./graphs.py:builder", "compiled": "./graphs.py:compiled",
        "factory": {"path": "./graphs.py:factory", "description": "a factory"}, "async_factory": "./graphs.py:async_factory",
    })
    project = load_project(config)
    saver = InMemorySaver()
    graphs = await project.compiled(saver)
    assert set(graphs) == {"builder", "compiled", "factory", "async_factory"}
    for graph_id, graph in graphs.items():
        assert graph.checkpointer is saver
        result = await graph.ainvoke({"n": 1}, {"configurable": {"thread_id": graph_id}})
        assert result == {"n": 2}


def test_policies_become_tool_specs_and_agent_grants(tmp_path: Path) -> None:
    project = load_project(_project(tmp_path, {"g": "./graphs.py:builder"}))
    [spec] = project.tool_specs()
    assert (spec.name, spec.audience, spec.scopes, spec.approval, spec.approval_ttl) == (
        "open_ticket", "https://tickets.example.com/tickets", ("tickets:write",), ApprovalPolicy.USER_CONSENT, 600
    )
    assert project.invoker_grants() == [("helper", "open_ticket")]
    client = project.agent_clients()["helper"]
    assert client.client_id == "helper-client" and client.client_secret.get_secret_value() == "s3cret"


def test_env_of_the_project_never_overrides_the_operators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PROJECT_KNOB", "operator")
    monkeypatch.delenv("TEST_PROJECT_NEW", raising=False)
    load_project(_project(tmp_path, {"g": "./graphs.py:builder"}, env={"TEST_PROJECT_KNOB": "file", "TEST_PROJECT_NEW": "file"}))
    assert (os.environ["TEST_PROJECT_KNOB"], os.environ["TEST_PROJECT_NEW"]) == ("operator", "file")


@pytest.mark.parametrize(
    ("graphs", "policies", "names"),
    [
        ({}, POLICIES, ["langgraph.json", "graphs", "Fix:"]),
        ({"g": "graphs.py"}, POLICIES, ["graphs.g", "./file.py:name"]),
        ({"g": "./missing.py:graph"}, POLICIES, ["graphs.g", "missing.py not found"]),
        ({"g": "./graphs.py:nothing"}, POLICIES, ["graphs.g", "no 'nothing'"]),
        ({"g": "../outside.py:graph"}, POLICIES, ["graphs.g", "outside the project folder"]),
        ({"g": "./graphs.py:builder"}, "tools: [{name: t, args_schema: 'nowhere.at_all:Model'}]", ["mandate.yaml", "tools.0.args_schema"]),
        ({"g": "./graphs.py:builder"}, "tools: [{name: t, args_schema: 'os.path:join'}]", ["mandate.yaml", "tools.0.args_schema", "subclass of BaseModel"]),
        ({"g": "./graphs.py:builder"}, "tools: [{name: x, secret: y}]", ["mandate.yaml", "tools.0.secret", "Fix:"]),
        ({"g": "./graphs.py:builder"}, "agents: {a: {client_id: c, client_secret: s}}", ["mandate.yaml", "agents.a.client_secret"]),
        ({"g": "./graphs.py:builder"}, "agents: {a: {client_id: c, tools: [ghost]}}", ["mandate.yaml", "ghost", "no entry under tools"]),
        ({"g": "./graphs.py:builder"}, "tools: [{name: t, audience: '${UNSET_URL}'}]", ["mandate.yaml", "tools.0.audience", "UNSET_URL"]),
        ({"g": "./graphs.py:builder"}, "tools: [{name: Bad-Name}]", ["mandate.yaml", "tools.0.name"]),
        ({"g": "./graphs.py:builder"}, "tools: [{name: t}, {name: t}]", ["mandate.yaml", "each name once"]),
        ({"g": "./graphs.py:builder"}, "tools: [", ["mandate.yaml", "not valid YAML"]),
    ],
)
def test_a_wrong_project_is_refused_naming_file_key_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, graphs: dict[str, str], policies: str, names: list[str]
) -> None:
    monkeypatch.delenv("UNSET_URL", raising=False)
    (tmp_path / "inner").mkdir()
    config = _project(tmp_path / "inner" if "outside" in str(graphs) else tmp_path, graphs, policies)
    if "outside" in str(graphs):
        (tmp_path / "outside.py").write_text("graph = None\n")
    with pytest.raises(ProjectError) as refused:
        load_project(config)
    for name in names:
        assert name in refused.value.message


async def test_a_graph_with_its_own_checkpointer_or_no_graph_is_refused(tmp_path: Path) -> None:
    for variable, problem in (("with_saver", "its own checkpointer"), ("not_a_graph", "is not a graph")):
        project = load_project(_project(tmp_path, {"g": f"./graphs.py:{variable}"}))
        with pytest.raises(ProjectError, match=problem):
            await project.compiled(InMemorySaver())


def test_an_unreadable_langgraph_json_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "langgraph.json"
    config.write_text('{\n  "graphs": {,}\n}')
    with pytest.raises(ProjectError, match="line 2"):
        load_project(config)
    with pytest.raises(ProjectError, match="not found"):
        load_project(tmp_path / "nowhere.json")


def test_mandate_serve_reports_a_wrong_project_without_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = _project(tmp_path, {"g": "./graphs.py:builder"}, "tools: [{name: t, approval: {policy: sometimes}}]")
    env = {**os.environ, "MANDATE_ENV": "dev", "MANDATE_DATA_DIR": str(tmp_path / "data"),
           "MANDATE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "MANDATE_FGA_API_URL": "http://127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "mandate.cli.main", "serve", "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "mandate.yaml: tools.0.approval.policy" in done.stderr and "Fix:" in done.stderr


NARROWING_AUTH = '''
from langgraph_sdk import Auth

auth = Auth()

@auth.on
async def acme_only(ctx, value):
    return ctx.user["tenant"] == "acme"

@auth.on.threads.search
async def by_team(ctx, value):
    return {"team": "red"}

@auth.on.threads.read
async def broken(ctx, value):
    raise RuntimeError("the project's own bug")

@auth.on.threads.delete
async def odd(ctx, value):
    return ["not", "a", "filter"]
'''


def _principal(tenant: str) -> Principal:
    return Principal(issuer="https://idp.example.com", issuer_key="idp", subject="ann", tenant=tenant)


async def test_project_auth_lives_in_mandate_yaml_and_only_narrows(tmp_path: Path) -> None:
    (tmp_path / "auth.py").write_text(NARROWING_AUTH)
    config = _project(
        tmp_path, {"g": "./graphs.py:builder"}, POLICIES + "auth: ./auth.py:auth\n",
        auth={"path": MANDATE_AUTH, "disable_studio_auth": True}, http={"app": "mandate.runtime.studio:app"},
    )
    project = load_project(config)
    assert project.auth is not None
    assert await project.auth.decide(_principal("acme"), "threads", "create", {}) is None
    assert await project.auth.decide(_principal("acme"), "threads", "search", {}) == {"team": "red"}
    for tenant, action in (("globex", "create"), ("acme", "read"), ("acme", "delete")):  # no, a failure, a non-filter
        with pytest.raises(ProjectAuthRefusedError):
            await project.auth.decide(_principal(tenant), "threads", action, {})
    with pytest.raises(ProjectAuthRefusedError):  # a filter the thread does not match
        await project.auth.check(_principal("acme"), "threads", "search", {}, metadata={"team": "blue"})


def test_a_project_cannot_replace_mandates_verifier_in_langgraph_json(tmp_path: Path) -> None:
    (tmp_path / "auth.py").write_text(NARROWING_AUTH)
    config = _project(tmp_path, {"g": "./graphs.py:builder"}, auth={"path": "./auth.py:auth"})
    with pytest.raises(ProjectError) as refused:
        load_project(config)
    for name in ("langgraph.json", "auth.path", MANDATE_AUTH, "mandate.yaml", "Fix:"):
        assert name in refused.value.message


def test_langgraph_devs_view_of_a_project_imports_no_graph(tmp_path: Path) -> None:
    config = _project(tmp_path, {"g": "./graphs.py:builder"})
    (tmp_path / "graphs.py").write_text("raise SystemExit('imported')\n")
    project = load_project(config, import_graphs=False)
    assert project.graphs == {} and [t.name for t in project.tool_specs()] == ["open_ticket"]
