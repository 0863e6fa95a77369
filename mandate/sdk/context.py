"""Where graph code finds Mandate's runtime context, under ``mandate serve`` and under ``langgraph dev``.

    ctx = await graph_context(runtime)   # in a node, a middleware hook or a tool wrapper

Under ``mandate serve`` the run engine invokes every graph with ``context=GraphContext(...)``: that is
the answer. Under ``langgraph dev`` (LangGraph Studio's local server) nobody passes one: the run
carries only what LangGraph's server put in its config (the user its ``auth`` handler verified, the
thread, the run). There, :mod:`mandate.runtime.studio`, which such a project's ``langgraph.json``
names as its ``auth``, registers a :class:`ContextProvider` when it is imported; the provider builds
the context from the run's config over that server process's services. Without either, gated code
refuses to run (:class:`~mandate.contract.MandateContextMissingError`).

A context a client could have written is never taken: LangGraph coerces a run's JSON ``context``
into a graph's dataclass ``context_schema``, which yields a :class:`GraphContext` whose caller is a
plain mapping. Only a caller that ``auth/`` verified (a :class:`~mandate.auth.Principal`) counts.
"""

from __future__ import annotations

from typing import Any, Protocol

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config
from langgraph.runtime import Runtime

from mandate.auth import Principal
from mandate.contract import GraphContext, MandateContextMissingError
from mandate.tools.mcp import McpServer

__all__ = ["ContextProvider", "graph_context", "mcp_server_of", "provide_context"]


class ContextProvider(Protocol):
    """Builds Mandate's runtime context for a run whose server passed none (``langgraph dev``)."""

    async def context(self, config: RunnableConfig) -> GraphContext:
        """The context of the run ``config`` belongs to.

        Raises:
            MandateContextMissingError: The run carries no identity this provider can stand behind.
        """
        ...

    def mcp_server(self, name: str) -> McpServer | None:
        """The project's MCP server ``name`` (``mcp_servers`` in ``mandate.yaml``), if configured."""
        ...


# The one registration point, and why it is module state: ``langgraph dev`` builds the project's
# graphs itself and hands a run nothing but its config, so the provider cannot be passed in; the
# module that serves as the server's ``auth`` registers it once, at import, for its process.
_provider: list[ContextProvider] = []


def provide_context(provider: ContextProvider | None) -> None:
    """Register (or, with ``None``, remove) the provider of this process (``mandate.runtime.studio`` does)."""
    _provider[:] = [provider] if provider is not None else []


def _trusted(context: GraphContext) -> GraphContext:
    if not isinstance(context.caller, Principal):  # coerced from a client's JSON, not built by Mandate
        raise MandateContextMissingError("The run's context was not built by Mandate; it is refused.")
    return context


async def graph_context(runtime: Runtime[Any] | None = None, *, config: RunnableConfig | None = None) -> GraphContext:
    """Mandate's runtime context for the running graph: the verified caller, the thread, the services.

    Args:
        runtime: The node's (or middleware's) ``Runtime``; its ``context`` wins when Mandate passed one.
        config: The run's config; by default the one of the running node (``langgraph.config.get_config``).

    Returns:
        The context Mandate's run engine passed, else the one this process's provider builds.

    Raises:
        MandateContextMissingError: Neither exists, or the context was not Mandate's (fail closed).
    """
    context = runtime.context if runtime is not None else None
    if isinstance(context, GraphContext):
        return _trusted(context)
    if not _provider:
        raise MandateContextMissingError(
            "This graph runs only under Mandate: `mandate serve`, or `langgraph dev` with Mandate's auth in langgraph.json."
        )
    if config is None:
        try:
            config = get_config()
        except RuntimeError as exc:
            raise MandateContextMissingError("No run is in progress here; there is no runtime context.") from exc
    return _trusted(await _provider[0].context(config))


def mcp_server_of(name: str) -> McpServer | None:
    """The MCP server ``name`` as this process's provider knows it (``None`` without a provider)."""
    return _provider[0].mcp_server(name) if _provider else None
