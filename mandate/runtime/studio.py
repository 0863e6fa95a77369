"""Entry points for ``langgraph dev`` (LangGraph Studio's local server): auth and the runs' context.

A project's ``langgraph.json`` names this module's ``auth`` (and ``app``, whose lifespan closes the
services), so under ``langgraph dev``, as under ``mandate serve``:

- every request is verified by Mandate's verifier and checked against the revocation list; the user
  object LangGraph keeps holds no token;
- every thread and its runs belong to their creator; a run's input may carry messages only, never a
  principal or a context; the project's own handlers (``auth`` in ``mandate.yaml``) then narrow;
- gated graph code finds its :class:`GraphContext` through :func:`mandate.sdk.graph_context`: this
  module registers itself as the provider when it is imported, and builds the context of a run from
  the user LangGraph's server verified for it, over services opened once for the process with the
  project's ``mandate.yaml`` (tools, agents, MCP servers) loaded.

The project is the ``langgraph.json`` that ``langgraph dev`` serves: ``MANDATE_PROJECT``, else the one
in the current folder (``cd examples/assistant && langgraph dev``); its graphs must be the served ones.

Delegated calls need the requester's token for the RFC 8693 exchange. LangGraph's run store must
never hold it, and this server is one process that runs every run it accepts, so the token is handed
over in memory: ``authenticate`` keeps it for the request only, the ``create_run`` handler hands it to
this process keyed by the new run's id, and the run's first context build takes it (re-verified,
revocation checked) into that run's context. It is never written anywhere: not in state, checkpoints,
LangGraph's stores, nor Mandate's vault. A run this process did not accept has no token and its
delegated calls refuse to run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from langchain_core.runnables import RunnableConfig
from langgraph_sdk import Auth
from starlette.applications import Starlette

from mandate.audit import build_tracer_provider
from mandate.auth import AuthError, Principal, TokenError
from mandate.contract import MandateContextMissingError
from mandate.contract.state import GraphContext
from mandate.errors import AppError
from mandate.runtime.errors import ProjectAuthRefusedError, ProjectError
from mandate.runtime.project import MANDATE_FILE, Project, load_project
from mandate.runtime.project_auth import Action, Resource
from mandate.runtime.runs import context_for
from mandate.runtime.services import Services, open_services
from mandate.runtime.sessions import issued_at
from mandate.runtime.settings import Settings
from mandate.sdk.context import provide_context
from mandate.tools.mcp import McpServer

__all__ = ["SERVICES_CLOSED", "SERVICES_OPENED", "StudioServices", "app", "auth"]

logger = logging.getLogger(__name__)

SERVICES_OPENED = "Mandate's services are open for this server process"
"""Logged once per process, when the first request opens the services."""
SERVICES_CLOSED = "Mandate's services are closed"
"""Logged when the server's shutdown closes them."""
INPUT_KEYS = frozenset({"messages"})
"""What a client may put in a run's input: messages. The principal comes only from the token."""
MAX_RUNS_HELD = 256
"""Runs whose context (and token) this process keeps at most; the oldest are forgotten first."""
_NAMESPACE_GRAPH = UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
"""The namespace of the LangGraph server's assistant ids for its graphs (``uuid5(namespace, graph_id)``).
``langgraph_api.graph.NAMESPACE_GRAPH`` is the same value, but importing that module reads the server's
whole configuration from the environment, which fails outside the server."""

auth = Auth()

_presented: ContextVar[str | None] = ContextVar("mandate_studio_presented_token", default=None)
"""The bearer token of the request being handled: set by ``authenticate``, read by ``create_run``."""


@cache
def _settings() -> Settings:
    return Settings()  # langgraph.json's env (or the caller's) says MANDATE_ENV; production unless told


def _served_graphs() -> dict[str, Any]:
    return json.loads(os.environ.get("LANGSERVE_GRAPHS") or "{}")


@cache
def _project() -> Project | None:
    """The project ``langgraph dev`` serves, without its graphs (the server builds them), or ``None``.

    Raises:
        ProjectError: ``MANDATE_PROJECT`` (or the folder's ``langgraph.json``) is wrong, or is not the
            configuration being served.
    """
    settings = _settings()
    path = Path(settings.project) if settings.project else Path.cwd() / "langgraph.json"
    if not path.is_file() or not (path.parent / MANDATE_FILE).is_file():
        if settings.project:
            raise ProjectError(f"{path}: (file): no langgraph.json with a {MANDATE_FILE} beside it. Fix: point MANDATE_PROJECT at the project's langgraph.json.")
        return None
    served = _served_graphs()
    declared = json.loads(path.read_text()).get("graphs")
    if served and declared != served:
        raise ProjectError(
            f"{path}: graphs: not the graphs this server serves ({sorted(served)}). "
            "Fix: run `langgraph dev` in the project's folder, or set MANDATE_PROJECT to the langgraph.json it serves."
        )
    return load_project(path, import_graphs=False)


def _principal(user: Any) -> Principal:
    return Principal(
        issuer=user["issuer"],
        issuer_key=user["issuer_key"],
        subject=user["subject"],
        tenant=user["tenant"],
        roles=tuple(user["roles"]),
        groups=tuple(user["groups"]),
        scopes=frozenset(user["permissions"]),
        acr=user["acr"],
        amr=tuple(user["amr"]),
        auth_time=user["auth_time"],
        expires_at=user["expires_at"],
        client_id=user["client_id"],
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class _Handoff:
    """A run's token, from the request that created the run to the run's first context build."""

    issuer: str
    subject: str
    token: str = field(repr=False)
    expires_at: float


class StudioServices:
    """Mandate's services for one server process (opened on first use, closed at shutdown), and the
    :class:`~mandate.sdk.context.ContextProvider` of its runs.

    A pool (with its migrations and store checks) costs far more than a run; opening it per request
    made every Studio run pay for it. The pool belongs to the event loop that opened it: LangGraph's
    local server runs every request and run on one shared loop (its default), and a request from
    another loop is refused rather than handed a pool it cannot use.
    """

    def __init__(self, settings: Settings, project: Project | None) -> None:
        self._settings = settings
        self._project = project
        self._lock = asyncio.Lock()
        self._stack = AsyncExitStack()
        self._services: Services | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handoffs: dict[str, _Handoff] = {}
        self._runs: OrderedDict[str, GraphContext] = OrderedDict()

    async def services(self) -> Services:
        """This process's services, opening them on the first call."""
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            raise RuntimeError(
                "Mandate's Studio graphs run on the server's shared event loop; unset BG_JOB_ISOLATED_LOOPS"
            )
        async with self._lock:
            if self._services is None:
                await self._open()
            assert self._services is not None
            return self._services

    async def _open(self) -> None:
        settings, project = self._settings, self._project
        services = await self._stack.enter_async_context(
            open_services(settings, tracer_provider=build_tracer_provider(), project=project)
        )
        if project is not None and settings.dev_issuer:  # dev and test only: the project's dev_grants
            await services.authz.write(writes=project.dev_grants())
        self._services = services
        self._loop = asyncio.get_running_loop()
        logger.info("%s (pid %d)", SERVICES_OPENED, os.getpid())

    def hand_over(self, run_id: str, user: Any, token: str) -> None:
        """Keep ``token`` of the verified ``user`` for the run ``run_id`` until that run takes it."""
        now = time.time()
        for stale in [k for k, h in self._handoffs.items() if h.expires_at <= now]:
            del self._handoffs[stale]
        while len(self._handoffs) >= MAX_RUNS_HELD:  # runs refused after their handler ran never take theirs
            del self._handoffs[next(iter(self._handoffs))]
        self._handoffs[run_id] = _Handoff(
            issuer=user["issuer"], subject=user["subject"], token=token, expires_at=float(user["expires_at"])
        )

    async def context(self, config: RunnableConfig) -> GraphContext:
        """The runtime context of the run ``config`` belongs to (see :class:`~mandate.sdk.context.ContextProvider`).

        Raises:
            MandateContextMissingError: The run has no user verified by Mandate's auth, or this process
                holds no sign-in for it, or that sign-in no longer verifies or was revoked.
        """
        configurable = config.get("configurable") or {}
        user, run_id, thread_id = (configurable.get(k) for k in ("langgraph_auth_user", "run_id", "thread_id"))
        if not user or not run_id or not thread_id:
            raise MandateContextMissingError("The run carries no user verified by Mandate's auth handler.")
        run_id = str(run_id)
        services = await self.services()
        async with self._lock:
            context = self._runs.get(run_id)
            if context is None:
                context = await self._context_of_new_run(services, run_id, str(thread_id), user)
                self._runs[run_id] = context
            self._runs.move_to_end(run_id)
            while len(self._runs) > MAX_RUNS_HELD:
                self._runs.popitem(last=False)
        if context.caller.issuer != user["issuer"] or context.caller.subject != user["subject"] or context.thread_id != str(thread_id):
            raise MandateContextMissingError("The run's context belongs to another caller or thread.")
        return context

    async def _context_of_new_run(self, services: Services, run_id: str, thread_id: str, user: Any) -> GraphContext:
        now = time.time()
        for stale in [k for k, c in self._runs.items() if c.caller.expires_at <= now]:
            del self._runs[stale]
        handoff = self._handoffs.pop(run_id, None)
        if handoff is None or (handoff.issuer, handoff.subject) != (user["issuer"], user["subject"]):
            raise MandateContextMissingError("No sign-in is held for this run in this process; start it again.")
        try:
            caller = await services.verifier.verify(handoff.token)
            await services.sessions.check_not_revoked(caller, issued_at=issued_at(handoff.token))
        except AuthError as exc:
            raise MandateContextMissingError(f"The sign-in of this run no longer holds ({exc.code}).") from exc
        return context_for(services, thread_id=thread_id, caller=caller, token=handoff.token)

    def mcp_server(self, name: str) -> McpServer | None:
        """The project's MCP server ``name``, if ``mandate.yaml`` configures it."""
        return self._project.mcp_servers().get(name) if self._project else None

    async def aclose(self) -> None:
        """Close the services and forget every run's context (idempotent); a later request opens them again."""
        async with self._lock:
            if self._services is not None:
                logger.info(SERVICES_CLOSED)
            self._services = None
            self._loop = None
            self._handoffs.clear()
            self._runs.clear()
            await self._stack.aclose()
            self._stack = AsyncExitStack()


@cache
def _process_services() -> StudioServices:
    # The one piece of process state here, and why: the LangGraph server calls the graph factories
    # below for every request and gives them nothing to keep; this cached holder is where the
    # services live between requests. ``langgraph.json`` names this module by its import path, so
    # the server imports it once for the graphs, the auth handler and ``app``.
    settings = _settings().model_copy(update={"seed_demo": False, "project": None})
    return StudioServices(settings, _project())


class _Provider:
    """This process's context provider: the services holder, created only when a run first asks."""

    async def context(self, config: RunnableConfig) -> GraphContext:
        if not (config.get("configurable") or {}).get("langgraph_auth_user"):  # not a run of this server
            raise MandateContextMissingError("The run carries no user verified by Mandate's auth handler.")
        return await _process_services().context(config)

    def mcp_server(self, name: str) -> McpServer | None:
        project = _project()
        return project.mcp_servers().get(name) if project else None


provide_context(_Provider())


# -- auth ------------------------------------------------------------------------------------------


def _refused(status: int, detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(status_code=status, detail=detail)


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    """Verify the bearer token exactly like Mandate's own server; the user object holds no token."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _refused(401, "missing_token")
    try:
        services = await _process_services().services()
        principal = await services.verifier.verify(token)
        await services.sessions.check_not_revoked(principal, issued_at=issued_at(token))
    except TokenError as exc:
        raise _refused(401, exc.code) from exc
    except AppError as exc:  # the issuer, the revocation list: fail closed, and say it is not the token
        raise _refused(503, exc.code) from exc
    _presented.set(token)  # for this request only: create_run hands it to the run it creates
    return {
        "identity": f"{principal.issuer}|{principal.subject}",
        "permissions": sorted(principal.scopes),
        "issuer": principal.issuer,
        "issuer_key": principal.issuer_key,
        "subject": principal.subject,
        "tenant": principal.tenant,
        "roles": list(principal.roles),
        "groups": list(principal.groups),
        "acr": principal.acr,
        "amr": list(principal.amr),
        "auth_time": principal.auth_time,
        "expires_at": principal.expires_at,
        "client_id": principal.client_id,
    }


def _graph_id(assistant_id: Any) -> str:
    """The graph id of one of the server's own assistants (the project's handlers see graph ids)."""
    for graph_id in _served_graphs():
        if str(uuid5(_NAMESPACE_GRAPH, graph_id)) == str(assistant_id):
            return graph_id
    return str(assistant_id)


async def _narrowed(
    ctx: Auth.types.AuthContext, resource: Resource, action: Action, value: dict[str, Any], own: dict[str, str] | None
) -> dict[str, str] | None:
    """Mandate's filter ``own`` narrowed by the project's handler; refused if the handler says no."""
    project = _project()
    if project is None or project.auth is None:
        return own
    try:
        extra = await project.auth.decide(_principal(ctx.user), resource, action, value)
    except ProjectAuthRefusedError as exc:
        raise _refused(403, exc.code) from exc
    if not extra:
        return own
    if own and any(key in extra and extra[key] != own[key] for key in own):
        raise _refused(403, ProjectAuthRefusedError.code)  # it would widen Mandate's filter: never
    return {**extra, **(own or {})}


def _plain(value: Any) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, UUID) else v for k, v in dict(value).items()} if isinstance(value, Mapping) else {}


@auth.on
async def deny_by_default(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Anything not allowed below (crons, the store, changing assistants) is refused."""
    raise _refused(403, "not_allowed")


@auth.on.threads
async def threads_of_their_owner(ctx: Auth.types.AuthContext, value: Any) -> dict[str, str] | None:
    """Every thread and its runs belong to whoever created it; others neither see nor touch it.

    A write of a thread's state (an update naming neither metadata nor a run action) is refused:
    the state holds the requester and the conversation, which only runs of the graph write.
    """
    if ctx.action == "update" and isinstance(value, Mapping) and not ({"metadata", "action"} & set(value)):
        raise _refused(403, "state_update_not_allowed")
    metadata = value.setdefault("metadata", {}) if isinstance(value, dict) and ctx.action in ("create", "update") else None
    if isinstance(metadata, dict):
        metadata["owner"] = ctx.user.identity
    return await _narrowed(ctx, "threads", ctx.action, _plain(value), {"owner": ctx.user.identity})


@auth.on.threads.create_run
async def runs_of_their_owner(ctx: Auth.types.AuthContext, value: Any) -> dict[str, str] | None:
    """Runs follow their thread's owner; their input carries messages only and no context is taken.

    The verified requester is put into the input (a thread keeps its first one), and the caller's
    token is handed to this process for the run alone.
    """
    kwargs = value.get("kwargs") if isinstance(value, dict) else None
    if not isinstance(kwargs, dict):
        raise _refused(422, "run_not_understood")
    graph_input = kwargs.get("input")
    if graph_input is not None and (not isinstance(graph_input, dict) or not set(graph_input) <= INPUT_KEYS):
        raise _refused(422, "input_not_allowed")
    command = {k: v for k, v in (kwargs.get("command") or {}).items() if v is not None}
    if set(command) - {"resume"}:
        raise _refused(422, "command_not_allowed")  # an answer to a pause, never a state update or a jump
    configurable = (kwargs.get("config") or {}).get("configurable") or {}
    if configurable.get("__context_provided__") and kwargs.get("context"):
        raise _refused(422, "context_not_allowed")  # Mandate's context is built here, never sent
    if kwargs.get("checkpoint") or kwargs.get("checkpoint_id") or configurable.get("checkpoint_id"):
        raise _refused(422, "checkpoint_not_allowed")  # no fork from an earlier checkpoint
    project_value = {
        "thread_id": str(value["thread_id"]) if value.get("thread_id") else None,
        "assistant_id": _graph_id(value.get("assistant_id")),
        "kwargs": {k: kwargs.get(k) for k in ("input", "command", "metadata") if kwargs.get(k) is not None},
    }
    value.setdefault("metadata", {})["owner"] = ctx.user.identity
    decision = await _narrowed(ctx, "threads", "create_run", project_value, {"owner": ctx.user.identity})
    token, run_id = _presented.get(), value.get("run_id")
    if not token or run_id is None:
        raise _refused(401, "missing_token")
    if isinstance(graph_input, dict):
        graph_input["principal"] = _principal(ctx.user).to_state()
    _process_services().hand_over(str(run_id), ctx.user, token)
    return decision


@auth.on.assistants.read
async def read_assistants(ctx: Auth.types.AuthContext, value: Any) -> dict[str, str] | None:
    """Any verified user may see the graphs (unless the project's handler narrows)."""
    return await _narrowed(ctx, "assistants", "read", {**_plain(value), "assistant_id": _graph_id(value.get("assistant_id"))}, None)


@auth.on.assistants.search
async def search_assistants(ctx: Auth.types.AuthContext, value: Any) -> dict[str, str] | None:
    """Any verified user may list the graphs (unless the project's handler narrows)."""
    return await _narrowed(ctx, "assistants", "search", _plain(value), None)


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    _project()  # a wrong project stops the server at startup, naming the file, the key and the fix
    yield
    await _process_services().aclose()


app = Starlette(lifespan=_lifespan)
"""``langgraph.json``'s ``http.app``: no routes of its own, only the lifespan that checks the project
at startup and closes the services at shutdown."""
