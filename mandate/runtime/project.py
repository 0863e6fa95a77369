"""A team's project served by Mandate: the graphs of its ``langgraph.json`` and the policies of its
``mandate.yaml``, loaded and checked once at startup.

The graph specs follow the LangGraph CLI (``./path.py:attr`` or ``module:attr``; a compiled graph,
a ``StateGraph`` builder, or a factory taking nothing or a ``RunnableConfig``), so the same folder
runs under ``langgraph dev``. Two deliberate differences: paths are relative to the config file's
folder (not the current directory), and ``env`` never overrides a variable already set, so an
operator's environment wins over a file in the repository. A factory is called once per process.

``langgraph.json``'s ``auth`` is Mandate's own (``mandate.runtime.studio:auth``) or absent: it is what
``langgraph dev`` authenticates with, so Mandate's verifier decides there as under ``mandate serve``
(which verifies every request itself and ignores that entry). A project's own handlers, which may
only narrow, are named in ``mandate.yaml`` instead (``auth: ./auth.py:auth``).

``mandate.yaml`` (beside ``langgraph.json``) is policy as data::

    tools:                       # every tool an agent may call; an unlisted tool is denied
      - name: create_ticket
        args_schema: tickets.schemas:CreateTicket       # optional: a pydantic model the arguments must fit
        audience: https://tickets.example.com/tickets   # the API's URL and token audience
        scopes: [tickets:write]
        sensitivity: write       # read | write | financial
        step_up: {acr: "urn:mandate:acr:mfa", max_age: 300}
        approval: {policy: user_consent, ttl: 86400}    # none | user_consent | approver
      - name: add_note           # a tool of a remote MCP server (its audience is the server)
        mcp: {server: notes, tool: add_note}
        scopes: [notes:read, notes:write]
    mcp_servers:                 # remote MCP servers (Streamable HTTP), checked by RFC 9728 at first use
      notes: {url: https://notes.example.com/mcp, list_scopes: [notes:read]}
    agents:                      # each agent's OAuth client and the tools it may invoke
      assistant:
        client_id: mandate-agent-assistant
        client_secret_env: ASSISTANT_CLIENT_SECRET
        tools: [create_ticket]
    auth: ./auth.py:auth         # the project's own LangGraph Auth handlers: they narrow, never widen

Every error names the file, the key and what would fix it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from dotenv import dotenv_values
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel
from langgraph_sdk import Auth
from pydantic import BaseModel, ConfigDict, Field, ImportString, SecretStr, ValidationError, model_validator

from mandate.auth import Relationship, StepUpRequirement
from mandate.runtime.errors import ProjectError
from mandate.runtime.project_auth import ProjectAuth
from mandate.runtime.settings import DEV_SECRET_PLACEHOLDER, AgentClientSettings
from mandate.sdk.mcp import serving_mcp_servers
from mandate.tools import ApprovalPolicy, EditRule, ToolSpec
from mandate.tools.mcp import McpServer

__all__ = ["MANDATE_AUTH", "MANDATE_FILE", "Project", "ProjectPolicies", "load_project"]

MANDATE_FILE = "mandate.yaml"
"""Mandate's settings for a project, beside its ``langgraph.json``."""
MANDATE_AUTH = "mandate.runtime.studio:auth"
"""The only ``auth`` a project's ``langgraph.json`` may name: Mandate's verifier, for ``langgraph dev``."""
NAME = r"^[a-z][a-z0-9_]{0,63}$"


class StepUpPolicy(BaseModel):
    """How strong and fresh the requester's sign-in must be for the call (RFC 9470)."""

    model_config = ConfigDict(extra="forbid")
    acr: str
    max_age: int = Field(gt=0, le=86_400)


class ApprovalSettings(BaseModel):
    """Who must say yes before the call runs."""

    model_config = ConfigDict(extra="forbid")
    policy: ApprovalPolicy = ApprovalPolicy.NONE
    approver_distinct: bool = True
    ttl: int = Field(default=3600, gt=0, le=30 * 86_400)
    editable: dict[str, EditRule] = Field(default_factory=dict)


class McpToolRef(BaseModel):
    """Which MCP server and tool a policy governs."""

    model_config = ConfigDict(extra="forbid")
    server: str
    """A key of ``mcp_servers``."""
    tool: str | None = None
    """The tool's name on the server; none: the policy's ``name``."""


class McpServerSettings(BaseModel):
    """A remote MCP server: its Streamable HTTP endpoint, which is also its resource identifier."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://[^#]+$")
    list_scopes: list[str] = Field(default_factory=list)
    """Scopes of the token that lists the server's tools."""


class ToolPolicy(BaseModel):
    """One tool's policy: which grant it needs, where it acts, and what it demands before it runs."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    description: str = ""
    audience: str | None = Field(default=None, pattern=r"^https?://")
    """The API the tool calls, and the audience of its delegated token; none: no token is exchanged."""
    relation: str = "can_use"
    scopes: list[str] = Field(default_factory=list)
    sensitivity: Literal["read", "write", "financial"] = "read"
    step_up: StepUpPolicy | None = None
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings)
    mcp: McpToolRef | None = None
    """A tool of a remote MCP server; its ``audience`` is then the server's URL."""
    args_schema: ImportString[type[BaseModel]] | None = None
    """``module:Model``, a pydantic model the arguments must fit before anyone decides on them (an
    approver then sees them normalised); none: the tool validates its arguments when it runs."""

    def spec(self) -> ToolSpec:
        return ToolSpec(
            name=self.name,
            description=self.description,
            args_schema=self.args_schema,
            audience=self.audience,
            relation=self.relation,
            scopes=tuple(self.scopes),
            sensitivity=self.sensitivity,
            step_up=StepUpRequirement(acr=self.step_up.acr, max_age=self.step_up.max_age) if self.step_up else None,
            approval=self.approval.policy,
            approver_distinct=self.approval.approver_distinct,
            approval_ttl=self.approval.ttl,
            editable=dict(self.approval.editable),
        )


class AgentPolicy(BaseModel):
    """An agent: its OAuth client (the ``act`` of its delegated tokens) and the tools it may invoke."""

    model_config = ConfigDict(extra="forbid")
    client_id: str = Field(min_length=1)
    client_secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    """The environment variable holding the client's secret (never the secret itself in the file)."""
    tools: list[str] = Field(default_factory=list)


class DevGrant(BaseModel):
    """One OpenFGA tuple for trying the project in dev (``tenant:acme#member can_use tool:x``)."""

    model_config = ConfigDict(extra="forbid")
    user: str = Field(pattern=r"^[a-z_]+:[^\s#:]+(#[a-z_]+)?$")
    relation: str = Field(pattern=r"^[a-z_]+$")
    object: str = Field(pattern=r"^[a-z_]+:[^\s#:]+$")


class ProjectPolicies(BaseModel):
    """The schema of ``mandate.yaml``."""

    model_config = ConfigDict(extra="forbid")
    tools: list[ToolPolicy] = Field(default_factory=list)
    agents: dict[str, AgentPolicy] = Field(default_factory=dict)
    dev_grants: list[DevGrant] = Field(default_factory=list)
    """Written to OpenFGA at startup in dev and test only, beside the demo world; in production,
    who may use a tool is the tenant's data, written by its own administration."""
    mcp_servers: dict[str, McpServerSettings] = Field(default_factory=dict)
    auth: str | None = Field(default=None, pattern=r"^[^:\s]+:[A-Za-z_][A-Za-z0-9_]*$")
    """The project's own ``Auth`` object (``./auth.py:auth`` or ``module:attr``), consulted after
    Mandate's checks under ``mandate serve`` and ``langgraph dev``: it may narrow, never widen."""

    @model_validator(mode="after")
    def _mcp_audiences(self) -> ProjectPolicies:
        """An MCP tool's audience is its server's URL: its tokens are for exactly that resource."""
        for index, tool in enumerate(self.tools):
            if tool.mcp is None:
                continue
            server = self.mcp_servers.get(tool.mcp.server)
            if server is None:
                raise ValueError(f"tools.{index}.mcp.server: {tool.mcp.server!r} has no entry under mcp_servers")
            if tool.audience not in (None, server.url):
                raise ValueError(f"tools.{index}.audience: an MCP tool's audience is its server's url; leave it out")
            tool.audience = server.url
        return self

    @model_validator(mode="after")
    def _consistent(self) -> ProjectPolicies:
        names = [tool.name for tool in self.tools]
        if len(names) != len(set(names)):
            raise ValueError(f"tools: each name once (repeated: {sorted({n for n in names if names.count(n) > 1})})")
        for agent, policy in self.agents.items():
            unknown = sorted(set(policy.tools) - set(names))
            if unknown:
                raise ValueError(f"agents.{agent}.tools: {unknown} have no entry under tools")
        return self


@dataclass(frozen=True, kw_only=True, slots=True)
class Project:
    """A loaded project: its graph sources by graph id, and its policies."""

    root: Path
    auth: ProjectAuth | None
    """The project's own ``Auth`` handlers (``auth`` in ``mandate.yaml``): they narrow, never widen."""
    graphs: Mapping[str, Any]
    """Graph id → what the spec named (compiled graph, builder or factory), not yet bound to a checkpointer."""
    descriptions: Mapping[str, str]
    """Graph id → the ``description`` its spec gives, if any (shown as its assistant's description)."""
    policies: ProjectPolicies

    def tool_specs(self) -> list[ToolSpec]:
        return [tool.spec() for tool in self.policies.tools]

    def agent_clients(self) -> dict[str, AgentClientSettings]:
        """The agents' OAuth clients, secrets read from the environment variables the file names."""
        clients = {}
        for name, agent in self.policies.agents.items():
            secret = os.environ.get(agent.client_secret_env, "") if agent.client_secret_env else ""
            clients[name] = AgentClientSettings(client_id=agent.client_id, client_secret=SecretStr(secret or DEV_SECRET_PLACEHOLDER))
        return clients

    def mcp_servers(self) -> dict[str, McpServer]:
        """The remote MCP servers, each with the tools its policies name."""
        return {
            name: McpServer(
                name=name,
                url=server.url,
                list_scopes=tuple(server.list_scopes),
                tools={t.mcp.tool or t.name: t.name for t in self.policies.tools if t.mcp and t.mcp.server == name},
            )
            for name, server in self.policies.mcp_servers.items()
        }

    def dev_grants(self) -> list[Relationship]:
        return [Relationship(g.user, g.relation, g.object) for g in self.policies.dev_grants]

    def invoker_grants(self) -> list[tuple[str, str]]:
        """(agent name, tool name) for every tool an agent may invoke."""
        return [(agent, tool) for agent, policy in self.policies.agents.items() for tool in policy.tools]

    async def compiled(self, checkpointer: BaseCheckpointSaver | None) -> dict[str, CompiledStateGraph]:
        """Every graph compiled (or copied) with ``checkpointer`` (none: the host server's applies); factories are called now."""
        with serving_mcp_servers(self.mcp_servers()):  # for McpTools("<server>") in the graphs' code
            return {graph_id: await _compiled(graph_id, source, checkpointer, self.root) for graph_id, source in self.graphs.items()}


def _fail(file: Path, key: str, problem: str, fix: str) -> ProjectError:
    return ProjectError(f"{file}: {key}: {problem}. Fix: {fix}")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise _fail(path, "(file)", "not found", "pass the path of the project's langgraph.json") from None
    except json.JSONDecodeError as exc:
        raise _fail(path, f"line {exc.lineno}", "not valid JSON", "correct the JSON syntax") from None
    if not isinstance(config, dict) or not isinstance(config.get("graphs"), dict) or not config["graphs"]:
        raise _fail(path, "graphs", "missing or empty", 'name each graph, e.g. {"agent": "./agent.py:graph"}')
    return config


_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def _expand(path: Path, value: Any, key: str, variables: Mapping[str, str]) -> Any:
    """``value`` with every ``${NAME}`` in its strings read from ``variables``."""
    if isinstance(value, dict):
        return {k: _expand(path, v, f"{key}.{k}" if key else str(k), variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(path, v, f"{key}.{i}", variables) for i, v in enumerate(value)]
    if isinstance(value, str):
        for name in _VARIABLE.findall(value):
            if name not in variables:
                raise _fail(path, key, f"${{{name}}} is not set", f"set the environment variable {name}")
        return _VARIABLE.sub(lambda m: variables[m.group(1)], value)
    return value


def _read_policies(path: Path, settings: Mapping[str, str]) -> ProjectPolicies:
    if not path.exists():
        return ProjectPolicies()
    try:
        raw = _expand(path, yaml.safe_load(path.read_text()) or {}, "", {**os.environ, **settings})
        return ProjectPolicies.model_validate(raw)
    except yaml.YAMLError as exc:
        raise _fail(path, "(file)", f"not valid YAML ({type(exc).__name__})", "correct the YAML syntax") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise _fail(path, key, first["msg"], "see the mandate.yaml schema in the README") from None


def _apply_env(config_path: Path, env: Any) -> None:
    """Set the project's variables that the operator has not set (the operator's environment wins)."""
    if isinstance(env, str):
        values = dotenv_values(config_path.parent / env)
    elif isinstance(env, dict):
        values = env
    elif env is None:
        return
    else:
        raise _fail(config_path, "env", "neither a mapping nor a path", 'give {"NAME": "value"} or ".env"')
    for name, value in values.items():
        if value is not None:
            os.environ.setdefault(str(name), str(value))


def _import(root: Path, config_path: Path, key: str, spec: Any) -> Any:
    path = spec.get("path") if isinstance(spec, dict) else spec
    if not isinstance(path, str) or ":" not in path:
        raise _fail(config_path, key, "not of the form './file.py:name' or 'module:name'", "name the graph's file and variable")
    target, variable = path.rsplit(":", 1)
    try:
        if "/" in target:
            file = (root / target).resolve()
            if not file.is_relative_to(root.resolve()):
                raise _fail(config_path, key, f"{target} is outside the project folder", "keep graph files inside it")
            relative = file.relative_to(root.resolve()).with_suffix("")
            module_name = re.sub(r"\W", "_", f"mandate_project_{root.name}_{'_'.join(relative.parts)}")
            spec_ = importlib.util.spec_from_file_location(module_name, file)
            if spec_ is None or spec_.loader is None or not file.exists():
                raise _fail(config_path, key, f"{target} not found", "give a path relative to langgraph.json")
            module = importlib.util.module_from_spec(spec_)
            sys.modules[module_name] = module
            spec_.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ProjectError:
        raise
    except Exception as exc:
        raise _fail(config_path, key, f"importing {target} failed ({type(exc).__name__}: {exc})", "make the module import cleanly") from exc
    if variable not in vars(module):
        raise _fail(config_path, key, f"{target} has no {variable!r}", "name a variable the module defines")
    return vars(module)[variable]


def _check_server_auth(config_path: Path, spec: Any) -> None:
    """``langgraph.json``'s ``auth`` must be Mandate's (or absent): a project never replaces the verifier."""
    if spec is None:
        return
    path = spec.get("path") if isinstance(spec, dict) else spec
    if path != MANDATE_AUTH:
        raise _fail(
            config_path, "auth.path", f"{path!r} would replace Mandate's verifier under langgraph dev",
            f'name "{MANDATE_AUTH}" here and move your own handlers to {MANDATE_FILE} (auth: ./auth.py:auth); they then narrow',
        )


def _auth(root: Path, policies_path: Path, path: str | None) -> ProjectAuth | None:
    if path is None:
        return None
    if "/" not in path.split(":")[0] and ".py" in path:
        path = f"./{path}"  # the LangGraph CLI takes a bare file name for auth, unlike for graphs
    handler = _import(root, policies_path, "auth", path)
    if not isinstance(handler, Auth):
        raise _fail(policies_path, "auth", f"{path} is not a langgraph_sdk.Auth", "export an Auth() object")
    return ProjectAuth(handler)


async def _compiled(graph_id: str, source: Any, checkpointer: BaseCheckpointSaver | None, root: Path) -> CompiledStateGraph:
    graph = source
    if callable(graph) and not isinstance(graph, (Pregel, StateGraph)):
        graph = graph(RunnableConfig(configurable={})) if inspect.signature(graph).parameters else graph()
        if inspect.isawaitable(graph):
            graph = await graph
    if isinstance(graph, StateGraph):
        return graph.compile(checkpointer=checkpointer, name=graph_id)
    if isinstance(graph, Pregel):
        if graph.checkpointer not in (None, False):
            raise ProjectError(f"{root}: graphs.{graph_id}: compiled with its own checkpointer. Fix: compile without one; Mandate adds its own.")
        return graph.copy(update={"checkpointer": checkpointer})  # type: ignore[return-value]
    raise ProjectError(f"{root}: graphs.{graph_id}: {type(graph).__name__} is not a graph. Fix: export a compiled graph, a StateGraph or a factory.")


def load_project(config_path: Path, *, settings: Mapping[str, str] | None = None, import_graphs: bool = True) -> Project:
    """Read ``langgraph.json`` and the ``mandate.yaml`` beside it; import the graphs' modules.

    Args:
        config_path: The project's ``langgraph.json``.
        settings: Mandate's resolved settings a ``${NAME}`` in ``mandate.yaml`` may read
            (``MANDATE_PUBLIC_URL`` …); they win over the environment, which holds the same names unresolved.
        import_graphs: ``False`` when another server (``langgraph dev``) builds the graphs itself:
            the project then has its policies and auth, and no graphs.

    Raises:
        ProjectError: Anything wrong, naming the file, the key and the fix.
    """
    config_path = config_path.resolve()
    config = _read_config(config_path)
    root = config_path.parent
    _apply_env(config_path, config.get("env"))
    for dependency in config.get("dependencies", []):
        folder = (root / dependency).resolve()
        if folder.is_dir() and str(folder) not in sys.path:
            sys.path.append(str(folder))
    policies = _read_policies(root / MANDATE_FILE, settings or {})  # after dependencies: it may name their models
    _check_server_auth(config_path, config.get("auth"))
    graphs = (
        {graph_id: _import(root, config_path, f"graphs.{graph_id}", spec) for graph_id, spec in config["graphs"].items()}
        if import_graphs else {}
    )
    descriptions = {
        graph_id: spec["description"]
        for graph_id, spec in config["graphs"].items()
        if isinstance(spec, dict) and isinstance(spec.get("description"), str)
    }
    return Project(
        root=root, auth=_auth(root, root / MANDATE_FILE, policies.auth), graphs=graphs, descriptions=descriptions, policies=policies
    )
