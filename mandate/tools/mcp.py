"""Remote MCP servers as a tool source: RFC 9728 discovery, listing, and LangChain tools over
Streamable HTTP (``langchain-mcp-adapters``).

A server is trusted only when it is configured by its canonical resource identifier, and its
protected resource metadata names exactly that resource and an authorization server we trust;
only then is any token sent to it. Every request carries a token for exactly that resource,
obtained by token exchange naming it as RFC 8707 ``resource``; the caller supplies it per call
through an interceptor, so a tool object never holds a token.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from langchain_core.tools import BaseTool
from langchain_mcp_adapters.interceptors import ToolCallInterceptor
from langchain_mcp_adapters.sessions import StreamableHttpConnection, create_session
from langchain_mcp_adapters.tools import convert_mcp_tool_to_langchain_tool
from mcp.client.auth.utils import build_protected_resource_metadata_discovery_urls, handle_protected_resource_response
from mcp.shared.auth import ProtectedResourceMetadata
from mcp.types import Tool as McpTool

from mandate.tools.errors import DownstreamError, McpServerRefusedError

__all__ = ["McpServer", "discover", "list_tools", "resource_of", "to_langchain_tools"]

MCP_TIMEOUT = 10.0
MAX_TOOL_PAGES = 100
"""A server that pages its tool list further than this is not listed to the end (refused)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class McpServer:
    """A remote MCP server as ``mandate.yaml`` configures it."""

    name: str
    """Its key under ``mcp_servers``."""
    url: str
    """Its Streamable HTTP endpoint, which is also its resource identifier (the tokens' ``resource``
    and ``aud``); written canonically (see :func:`resource_of`), or :func:`discover` refuses it."""
    list_scopes: tuple[str, ...]
    """Scopes of the token that lists its tools."""
    tools: Mapping[str, str]
    """MCP tool name → the policy name the model calls it by, for the tools a policy names."""


def resource_of(url: str) -> str:
    """The canonical resource identifier of ``url`` (RFC 8707 / MCP): lowercase scheme and host,
    no fragment, no trailing slash."""
    parts = urlsplit(url.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, ""))


async def discover(server: McpServer, *, trusted_issuers: Collection[str], http: httpx.AsyncClient) -> ProtectedResourceMetadata:
    """The server's protected resource metadata, checked against its configuration.

    Raises:
        McpServerRefusedError: A configured URL that is not its canonical resource identifier (the
            gate's tokens for it would name another spelling than the server's), no metadata,
            another resource, or no trusted authorization server.
    """
    key = f"mcp_servers.{server.name}"
    if server.url != resource_of(server.url):
        raise McpServerRefusedError(f"{key}: write its url as its canonical resource identifier, {resource_of(server.url)}.")
    metadata = None
    for url in build_protected_resource_metadata_discovery_urls(None, server.url):
        try:
            metadata = await handle_protected_resource_response(await http.get(url, timeout=MCP_TIMEOUT))
        except httpx.HTTPError as exc:
            raise McpServerRefusedError(f"{key}: its metadata could not be fetched from {url}.") from exc
        if metadata is not None:
            break
    if metadata is None:
        raise McpServerRefusedError(f"{key}: it serves no protected resource metadata (RFC 9728).")
    if resource_of(str(metadata.resource)) != resource_of(server.url):
        raise McpServerRefusedError(f"{key}: its metadata names resource {metadata.resource}, not {server.url}.")
    trusted = {issuer.rstrip("/") for issuer in trusted_issuers}
    if not {str(a).rstrip("/") for a in metadata.authorization_servers} & trusted:
        raise McpServerRefusedError(f"{key}: none of its authorization servers is a trusted issuer.")
    return metadata


def _connection(server: McpServer, headers: Mapping[str, str]) -> StreamableHttpConnection:
    return {"transport": "streamable_http", "url": server.url, "headers": dict(headers), "timeout": MCP_TIMEOUT}


async def list_tools(server: McpServer, *, access_token: str) -> list[McpTool]:
    """The server's tools, listed with ``access_token`` (a token for exactly this server).

    Raises:
        DownstreamError: The server refused or could not be reached.
    """
    try:
        async with create_session(_connection(server, {"Authorization": f"Bearer {access_token}"})) as session:
            await session.initialize()
            listed: list[McpTool] = []
            cursor = None
            for _ in range(MAX_TOOL_PAGES):
                page = await session.list_tools(cursor=cursor)
                listed.extend(page.tools)
                cursor = page.nextCursor
                if not cursor:
                    return listed
    except Exception as exc:  # anyio wraps transport errors in an ExceptionGroup
        raise DownstreamError(f"mcp_servers.{server.name}: its tools could not be listed.") from exc
    raise DownstreamError(f"mcp_servers.{server.name}: its tool list has more than {MAX_TOOL_PAGES} pages.")


def to_langchain_tools(server: McpServer, listed: list[McpTool], *, authorize: ToolCallInterceptor) -> list[BaseTool]:
    """LangChain tools for ``listed``; each call opens its own session, with the headers ``authorize`` sets.

    A tool a policy names takes the policy's name; the others keep their MCP names, and the gate
    denies them until a policy names them.
    """
    tools = []
    for mcp_tool in listed:
        tool = convert_mcp_tool_to_langchain_tool(
            None, mcp_tool, connection=_connection(server, {}), tool_interceptors=[authorize], server_name=server.name
        )
        tool.name = server.tools.get(mcp_tool.name, mcp_tool.name)  # the call itself still uses the MCP name
        tools.append(tool)
    return tools
