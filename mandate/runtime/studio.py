"""Entry points for ``langgraph dev`` (LangGraph Studio's local server): the graphs and the auth handler.

``langgraph.json`` points here. The LangGraph server loads module-level objects, so this adapter
builds what it needs from :class:`Settings` on demand: a verifier (for the auth handler) and, on the
first graph request, Mandate's services (kept for the process, closed by ``app``'s lifespan at
shutdown) around a thin outer graph that runs the real one as a subgraph with its typed runtime context. Identity comes only from the verified token; every thread is
owned by its creator. Raw tokens stay out of LangGraph's run store, so delegated tool calls need
Mandate's own server; under ``langgraph dev`` they pause for sign-in (``reauthenticate``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import cache
from typing import Annotated, Any

import httpx
from langchain_core.runnables import RunnableConfig
from langchain_core.messages import AnyMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph_sdk import Auth
from starlette.applications import Starlette
from typing_extensions import TypedDict

from mandate.audit import build_tracer_provider
from mandate.auth import IssuerUnavailableError, Principal, TokenError, TokenVerifier
from mandate.contract.state import GraphContext, MandateState
from mandate.runtime.runs import context_for
from mandate.runtime.services import Services, open_services, project_of, trusted_issuers
from mandate.runtime.settings import Settings

__all__ = ["SERVICES_CLOSED", "SERVICES_OPENED", "StudioServices", "app", "auth", "mandate", "supervisor"]

logger = logging.getLogger(__name__)

ASSISTANT_ID, SUPERVISOR_ID = "mandate", "supervisor"
STUDIO_GRAPHS = (ASSISTANT_ID, SUPERVISOR_ID)
"""The built-in project's graphs (``mandate/graphs/langgraph.json``)."""
SERVICES_OPENED = "Mandate's services are open for this server process"
"""Logged once per process, when the first graph request opens the services."""
SERVICES_CLOSED = "Mandate's services are closed"
"""Logged when the server's shutdown closes them."""

auth = Auth()


@cache
def _settings() -> Settings:
    return Settings()  # langgraph.json's env (or the caller's) says MANDATE_ENV; production unless told


@cache
def _verifier() -> TokenVerifier:
    # One verifier per server process: its JWKS cache is what keeps the issuer from being hammered.
    settings = _settings()
    return TokenVerifier(issuers=trusted_issuers(settings), audience=settings.audience, http=httpx.AsyncClient(timeout=10))


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    """Verify the bearer token exactly like Mandate's own server; the user object holds no token."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Auth.exceptions.HTTPException(status_code=401, detail="missing_token")
    try:
        principal = await _verifier().verify(token.strip())
    except TokenError as exc:
        raise Auth.exceptions.HTTPException(status_code=401, detail=exc.code) from exc
    except IssuerUnavailableError as exc:  # fail closed, and say it is the issuer, not the token
        raise Auth.exceptions.HTTPException(status_code=503, detail=exc.code) from exc
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


@auth.on
async def deny_by_default(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Anything not allowed below (crons, the store, changing assistants) is refused."""
    raise Auth.exceptions.HTTPException(status_code=403, detail="not_allowed")


@auth.on.threads
async def threads_of_their_owner(ctx: Auth.types.AuthContext, value: Any) -> dict[str, str]:
    """Every thread and its runs belong to whoever created it; others neither see nor touch it."""
    metadata = value.setdefault("metadata", {}) if isinstance(value, dict) else None
    if isinstance(metadata, dict):
        metadata["owner"] = ctx.user.identity
    return {"owner": ctx.user.identity}


INPUT_KEYS = frozenset({"messages"})
"""What a client may put in a run's input: messages. The principal comes only from the token."""


@auth.on.threads.create_run
async def runs_of_their_owner(ctx: Auth.types.AuthContext, value: Any) -> dict[str, str]:
    """Runs follow their thread's owner, and their input may carry messages only (never a principal)."""
    kwargs = value.get("kwargs") if isinstance(value, dict) else None
    graph_input = kwargs.get("input") if isinstance(kwargs, dict) else None
    if isinstance(graph_input, dict) and not set(graph_input) <= INPUT_KEYS:
        raise Auth.exceptions.HTTPException(status_code=422, detail="input_not_allowed")
    return await threads_of_their_owner(ctx, value)


@auth.on.assistants.read
async def read_assistants(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Any verified user may see the graphs."""


@auth.on.assistants.search
async def search_assistants(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Any verified user may list the graphs."""


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


class StudioInput(TypedDict, total=False):
    """What a run's input may set under ``langgraph dev``: the conversation, nothing else."""

    messages: Annotated[list[AnyMessage], add_messages]


def _outer(services: Services, graph_id: str, inner: CompiledStateGraph) -> CompiledStateGraph:
    """A one-node graph that runs ``inner`` as a subgraph, with the caller's runtime context."""

    async def run(state: MandateState, config: RunnableConfig) -> dict[str, Any]:
        user = config["configurable"]["langgraph_auth_user"]
        caller = _principal(user)
        thread_id = str(config["configurable"]["thread_id"])
        context: GraphContext = context_for(services, thread_id=thread_id, caller=caller, token="")
        # The input schema admits messages only, so a principal here was set by an earlier run
        # of this thread from its verified token; a new thread takes this caller's.
        update = {**state, "principal": state.get("principal") or caller.to_state()}
        return dict(await inner.ainvoke(update, config, context=context))

    graph = StateGraph(MandateState, input_schema=StudioInput)
    graph.add_node(graph_id, run)
    graph.add_edge(START, graph_id)
    graph.add_edge(graph_id, END)
    return graph.compile(name=graph_id)


class StudioServices:
    """Mandate's services and the graphs around them, for one server process: opened on first use, closed at shutdown.

    A pool (with its migrations and store checks) costs far more than a run; opening it per graph
    request made every Studio run pay for it. The pool belongs to the event loop that opened it:
    LangGraph's local server runs every request and run on one shared loop (its default), and a
    request from another loop is refused rather than handed a pool it cannot use.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = asyncio.Lock()
        self._stack = AsyncExitStack()
        self._graphs: dict[str, CompiledStateGraph] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def graph(self, graph_id: str) -> CompiledStateGraph:
        """The graph ``graph_id`` around this process's services, opening them on the first call."""
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            raise RuntimeError(
                "Mandate's Studio graphs run on the server's shared event loop; unset BG_JOB_ISOLATED_LOOPS"
            )
        async with self._lock:
            if self._graphs is None:
                self._graphs = await self._open()
            return self._graphs[graph_id]

    async def _open(self) -> dict[str, CompiledStateGraph]:
        services = await self._stack.enter_async_context(
            open_services(self._settings, tracer_provider=build_tracer_provider())
        )
        self._loop = asyncio.get_running_loop()
        logger.info("%s (pid %d)", SERVICES_OPENED, os.getpid())
        inner = await project_of(self._settings).compiled(None)  # the LangGraph server's checkpointer applies
        return {graph_id: _outer(services, graph_id, inner[graph_id]) for graph_id in STUDIO_GRAPHS}

    async def aclose(self) -> None:
        """Close the services (idempotent); a later request opens them again."""
        async with self._lock:
            if self._graphs is not None:
                logger.info(SERVICES_CLOSED)
            self._graphs = None
            self._loop = None
            await self._stack.aclose()
            self._stack = AsyncExitStack()


@cache
def _process_services() -> StudioServices:
    # The one piece of process state here, and why: the LangGraph server calls the graph factories
    # below for every request and gives them nothing to keep; this cached holder is where the
    # services live between requests. ``langgraph.json`` names this module by its import path, so
    # the server imports it once for both graphs, the auth handler and ``app``.
    return StudioServices(_settings().model_copy(update={"seed_demo": False}))


async def mandate(config: RunnableConfig) -> CompiledStateGraph:
    """The ``mandate`` graph for ``langgraph dev``."""
    return await _process_services().graph(ASSISTANT_ID)


async def supervisor(config: RunnableConfig) -> CompiledStateGraph:
    """The ``supervisor`` graph for ``langgraph dev``."""
    return await _process_services().graph(SUPERVISOR_ID)


@asynccontextmanager
async def _close_services_at_shutdown(app: Starlette) -> AsyncIterator[None]:
    yield
    await _process_services().aclose()


app = Starlette(lifespan=_close_services_at_shutdown)
"""``langgraph.json``'s ``http.app``: no routes of its own, only the lifespan that closes the services."""
