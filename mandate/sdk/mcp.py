"""Tools of a remote MCP server for a ``create_agent`` agent, authorized as the MCP spec requires.

    middleware=[MandateGate(agent="assistant"), McpTools("notes", agent="assistant")]

The server is the one ``mandate.yaml`` configures under ``mcp_servers.notes``. At the first model
call the server's protected resource metadata (RFC 9728) is checked (its ``resource`` must be the
configured URL, written canonically, and its ``authorization_servers`` must include the caller's
issuer, else ``mcp_server_refused``), and its tools are listed with a token exchanged for exactly
that resource: the request names the metadata's ``resource`` as RFC 8707 ``resource`` (see
:mod:`mandate.auth.exchange`), with the caller as ``sub``, the agent as ``act`` and the server's
``list_scopes``; the list is kept for the life of the process. Every call then passes the gate
first (an MCP tool no policy names is denied as ``unknown_tool``) and is sent with the delegated
token the gate exchanged for that call, only if it was asked for exactly that resource: never the
user's own token, and never a token for another resource.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langchain_mcp_adapters.interceptors import MCPToolCallRequest
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from mandate.auth import vocabulary as fga
from mandate.contract import GraphContext, MandateContextMissingError
from mandate.sdk.context import graph_context, mcp_server_of
from mandate.sdk.credentials import delegated_credentials
from mandate.tools.errors import ToolError
from mandate.tools.mcp import McpServer, discover, list_tools, resource_of, to_langchain_tools

__all__ = ["McpTools", "serving_mcp_servers"]

_configured: ContextVar[Mapping[str, McpServer] | None] = ContextVar("mandate_mcp_servers", default=None)


@contextmanager
def serving_mcp_servers(servers: Mapping[str, McpServer]) -> Iterator[None]:
    """Make the project's MCP servers known to the graphs built inside this block (Mandate's loader does it)."""
    reset = _configured.set(servers)
    try:
        yield
    finally:
        _configured.reset(reset)


class McpTools(AgentMiddleware):
    """Offers the tools of the MCP server ``server`` to the model and runs them with delegated tokens.

    Place it after :class:`~mandate.sdk.MandateGate`, so that every call is gated before it runs.
    """

    def __init__(self, server: str, *, agent: str) -> None:
        """
        Args:
            server: The server's key under ``mcp_servers`` in ``mandate.yaml``.
            agent: The acting agent, whose OAuth client exchanges the listing token.

        Raises:
            ToolError: Mandate is loading the graph and ``server`` is not under ``mcp_servers``.
                (Built elsewhere, for example by ``langgraph dev``, the graph builds; the server is
                then looked up when the tools are first listed, from the project Mandate's Studio
                adapter loaded, and the tools refuse to run without Mandate's runtime context.)
        """
        super().__init__()
        servers = _configured.get()
        if servers is not None and server not in servers:
            raise ToolError(f"MCP server {server!r} is not configured: name it under mcp_servers in mandate.yaml.")
        self._server_name = server
        self.server = servers[server] if servers is not None else None
        """The server as configured; ``None`` when the graph was not loaded by Mandate."""
        self.agent = agent if agent.startswith("agent:") else fga.agent(agent)
        self._tools: dict[str, BaseTool] | None = None
        self._listing = asyncio.Lock()
        self._resource = resource_of(self.server.url) if self.server is not None else None
        """The server's resource identifier: every token sent to it must have been asked for exactly this."""

    @property
    def name(self) -> str:
        return f"McpTools[{self._server_name}]"

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        """Offer the server's tools to the model, listing them at the first call."""
        tools = await self._listed(await graph_context(request.runtime))
        return await handler(request.override(tools=[*request.tools, *tools.values()]))

    async def awrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command]]
    ) -> ToolMessage | Command:
        """Hand the tool node this server's tool for a call the gate let through."""
        if request.tool is None and self._tools is None:  # a graph built for this run (langgraph dev's factories)
            await self._listed(await graph_context(request.runtime))
        tool = self._tools.get(request.tool_call["name"]) if request.tool is None and self._tools else None
        return await handler(request.override(tool=tool) if tool is not None else request)

    async def _listed(self, ctx: GraphContext) -> dict[str, BaseTool]:
        self.server = self.server or mcp_server_of(self._server_name)
        if self.server is None:
            raise MandateContextMissingError(f"MCP server {self._server_name!r} is not configured for this process (mcp_servers in mandate.yaml).")
        server = self.server
        async with self._listing:
            if self._tools is None:
                metadata = await discover(server, trusted_issuers=[ctx.caller.issuer], http=ctx.downstream)
                self._resource = resource_of(str(metadata.resource))
                token = await ctx.brokers[self.agent].exchange(
                    ctx.subject_token, issuer=ctx.caller.issuer, subject=ctx.caller.subject,
                    audience=self._resource, scopes=server.list_scopes,
                )
                listed = await list_tools(server, access_token=token.access_token)
                self._tools = {t.name: t for t in to_langchain_tools(server, listed, authorize=self._authorize)}
        return self._tools

    async def _authorize(self, request: MCPToolCallRequest, handler: Callable[[MCPToolCallRequest], Awaitable[Any]]) -> Any:
        """Send the call with the gate's delegated token, only if it is for exactly this server."""
        credentials = delegated_credentials()
        token = credentials.token
        if token is None or self._resource is None or token.audience != self._resource:
            raise ToolError(f"{request.name}: the call's delegated token is not for MCP server {self._server_name}.")
        headers = {"Authorization": f"Bearer {token.access_token}", "Idempotency-Key": credentials.idempotency_key}
        return await handler(request.override(headers=headers))
