"""Remote MCP servers: RFC 9728 discovery and refusal, the example notes server as a resource server
(audience, scope, ``act``, signature) over real HTTP on loopback with the real dev issuer, and the
rule that a call leaves only with a delegated token for exactly its server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from joserfc.jwk import RSAKey
from langchain_mcp_adapters.interceptors import MCPToolCallRequest
from mcp.types import CallToolResult, TextContent
from starlette.applications import Starlette

from mandate.auth import DelegatedToken
from mandate.runtime.settings import Settings
from mandate.sdk import CallCredentials, McpTools
from mandate.sdk.credentials import running_with
from mandate.sdk.mcp import serving_mcp_servers
from mandate.tools import McpServerRefusedError, ToolError
from mandate.tools.mcp import McpServer, discover, list_tools, resource_of, to_langchain_tools
from tests.utils.mcp_notes import NotesServer, notes_server
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.tokens import claims_of, dev_issuer_key, fresh_claims, login, sign

MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


@pytest.fixture(scope="module")
def notes(base_url: str) -> Iterator[NotesServer]:
    with notes_server(issuer=f"{base_url}/dev-idp") as server:
        yield server


def _server(url: str) -> McpServer:
    return McpServer(name="notes", url=url, list_scopes=("notes:read",), tools={})


def _delegated(base_url: str, key: RSAKey, **changes: object) -> str:
    """A token as the dev issuer would delegate it (sub alice, act the agent), with ``changes``."""
    template = claims_of(login(base_url, "alice"))
    return sign(fresh_claims(template, **{"act": {"sub": "mandate-agent-assistant"}, "scope": "notes:read", **changes}), key)


async def test_discover_accepts_metadata_naming_the_server_and_a_trusted_issuer(base_url: str, notes: NotesServer) -> None:
    async with httpx.AsyncClient() as http:
        metadata = await discover(_server(notes.url), trusted_issuers=[f"{base_url}/dev-idp"], http=http)
    assert resource_of(str(metadata.resource)) == resource_of(notes.url)


async def test_discover_refuses_metadata_for_another_resource(base_url: str) -> None:
    with notes_server(issuer=f"{base_url}/dev-idp", believed_url=f"http://127.0.0.1:{free_port()}/mcp") as elsewhere:
        async with httpx.AsyncClient() as http:
            with pytest.raises(McpServerRefusedError, match=r"mcp_servers\.notes: its metadata names resource"):
                await discover(_server(elsewhere.url), trusted_issuers=[f"{base_url}/dev-idp"], http=http)


async def test_discover_refuses_a_server_trusting_an_unknown_issuer(base_url: str) -> None:
    with notes_server(issuer="https://idp.attacker.example") as rogue:
        async with httpx.AsyncClient() as http:
            with pytest.raises(McpServerRefusedError, match=r"mcp_servers\.notes: none of its authorization servers"):
                await discover(_server(rogue.url), trusted_issuers=[f"{base_url}/dev-idp"], http=http)


async def test_discover_refuses_the_metadata_of_another_resource_on_the_same_host(base_url: str) -> None:
    """Mandate's own metadata at the origin's root names Mandate, not an MCP server at ``/mcp``."""
    async with httpx.AsyncClient() as http:
        with pytest.raises(McpServerRefusedError, match=r"its metadata names resource"):
            await discover(_server(f"{base_url}/mcp"), trusted_issuers=[f"{base_url}/dev-idp"], http=http)


@pytest.mark.parametrize("spelling", ["{url}/", "{url}#tools", "HTTP://127.0.0.1:{port}/mcp"])
async def test_discover_refuses_a_server_configured_by_another_spelling_of_its_resource(
    base_url: str, notes: NotesServer, spelling: str
) -> None:
    """The gate's tokens name the configured URL as their resource: it must be the canonical one."""
    configured = spelling.format(url=notes.url, port=urlsplit(notes.url).port)
    expected = f"mcp_servers.notes: write its url as its canonical resource identifier, {notes.url}."
    async with httpx.AsyncClient() as http:
        with pytest.raises(McpServerRefusedError, match=re.escape(expected)):
            await discover(_server(configured), trusted_issuers=[f"{base_url}/dev-idp"], http=http)


async def test_discover_refuses_a_server_without_metadata(base_url: str) -> None:
    with serve_in_thread(Starlette()) as bare:
        async with httpx.AsyncClient() as http:
            with pytest.raises(McpServerRefusedError, match=r"mcp_servers\.notes: it serves no protected resource metadata"):
                await discover(_server(f"{bare}/mcp"), trusted_issuers=[f"{base_url}/dev-idp"], http=http)


def test_resource_of_is_canonical() -> None:
    assert resource_of("HTTP://Notes.Example.com/mcp/#x") == "http://notes.example.com/mcp"
    assert resource_of("https://a.example/mcp") != resource_of("https://a.example/mcp2")


async def test_the_notes_server_lists_for_a_token_delegated_for_it(base_url: str, stack_settings: Settings, notes: NotesServer) -> None:
    token = _delegated(base_url, dev_issuer_key(stack_settings.data_dir), aud=notes.url)
    listed = await list_tools(_server(notes.url), access_token=token)
    assert {t.name for t in listed} == {"add_note", "list_notes", "delete_notes"}


@pytest.mark.parametrize(
    ("case", "changes"),
    [
        ("another resource", {"aud": "http://127.0.0.1:1/demo/tickets"}),
        ("another MCP server on the same host", {"aud": "{url}2"}),
        ("another spelling of its resource", {"aud": "{url}/"}),
        ("its resource with a fragment", {"aud": "{url}#tools"}),
        ("no act (not delegated)", {"act": None}),
        ("another issuer", {"iss": "https://idp.attacker.example"}),
        ("expired", {"exp": 1}),
    ],
)
def test_the_notes_server_refuses_a_token_not_delegated_for_it(
    base_url: str, stack_settings: Settings, notes: NotesServer, case: str, changes: dict[str, object]
) -> None:
    claims = {"aud": notes.url, **{k: v.format(url=notes.url) if isinstance(v, str) else v for k, v in changes.items()}}
    key = dev_issuer_key(stack_settings.data_dir)
    token = _delegated(base_url, key, **{k: v for k, v in claims.items() if v is not None})
    if claims.get("act", "") is None:
        token = sign({k: v for k, v in claims_of(token).items() if k != "act"}, key)
    answer = httpx.post(notes.url, headers={"Authorization": f"Bearer {token}", **MCP_ACCEPT}, json=LIST, timeout=10)
    assert answer.status_code == 401, case
    assert "resource_metadata=" in answer.headers["www-authenticate"]


def test_the_notes_server_refuses_the_users_own_token_and_a_forged_signature(base_url: str, notes: NotesServer) -> None:
    own = login(base_url, "alice")
    forged = sign(fresh_claims(claims_of(own), aud=notes.url, act={"sub": "mandate-agent-assistant"}, scope="notes:read"), RSAKey.generate_key(2048), kid="rogue")
    for token in (own, forged):
        answer = httpx.post(notes.url, headers={"Authorization": f"Bearer {token}", **MCP_ACCEPT}, json=LIST, timeout=10)
        assert answer.status_code == 401


def test_the_notes_server_needs_its_scope(base_url: str, stack_settings: Settings, notes: NotesServer) -> None:
    token = _delegated(base_url, dev_issuer_key(stack_settings.data_dir), aud=notes.url, scope="tickets:write")
    answer = httpx.post(notes.url, headers={"Authorization": f"Bearer {token}", **MCP_ACCEPT}, json=LIST, timeout=10)
    assert answer.status_code == 403


def _mcp_tools(url: str) -> McpTools:
    with serving_mcp_servers({"notes": _server(url)}):
        return McpTools("notes", agent="assistant")


@pytest.mark.parametrize(
    ("case", "credentials"),
    [
        ("a token for another API", CallCredentials(token=DelegatedToken(access_token="tickets-token", audience="https://tickets.example.com/api", scopes=(), expires_at=0), idempotency_key="k")),
        ("a token for another MCP server on the host", CallCredentials(token=DelegatedToken(access_token="t", audience="https://notes.example.com/mcp2", scopes=(), expires_at=0), idempotency_key="k")),
        ("a token asked for another spelling", CallCredentials(token=DelegatedToken(access_token="t", audience="https://NOTES.example.com/mcp/", scopes=(), expires_at=0), idempotency_key="k")),
        ("a token asked for a fragment", CallCredentials(token=DelegatedToken(access_token="t", audience="https://notes.example.com/mcp#x", scopes=(), expires_at=0), idempotency_key="k")),
        ("a call without a token", CallCredentials(token=None, idempotency_key="k")),
    ],
)
async def test_an_mcp_call_never_leaves_without_a_token_for_exactly_its_server(case: str, credentials: CallCredentials) -> None:
    sent: list[MCPToolCallRequest] = []

    async def server(request: MCPToolCallRequest) -> str:
        sent.append(request)
        return "done"

    tools = _mcp_tools("https://notes.example.com/mcp")
    with running_with(credentials), pytest.raises(ToolError, match="not for MCP server notes"):
        await tools._authorize(MCPToolCallRequest(name="add_note", args={}, server_name="notes"), server)
    assert sent == [], case


async def test_an_mcp_call_outside_the_gate_is_refused() -> None:
    async def server(request: MCPToolCallRequest) -> str:
        raise AssertionError("sent")

    with pytest.raises(ToolError, match="No tool call passed Mandate's gate"):
        await _mcp_tools("https://notes.example.com/mcp")._authorize(MCPToolCallRequest(name="add_note", args={}, server_name="notes"), server)


async def test_an_mcp_call_carries_the_delegated_token_and_idempotency_key() -> None:
    sent: list[MCPToolCallRequest] = []

    async def server(request: MCPToolCallRequest) -> str:
        sent.append(request)
        return "done"

    token = DelegatedToken(access_token="notes-token", audience="https://notes.example.com/mcp", scopes=("notes:write",), expires_at=0)
    with running_with(CallCredentials(token=token, idempotency_key="thread:call")):
        assert await _mcp_tools("https://notes.example.com/mcp")._authorize(MCPToolCallRequest(name="add_note", args={}, server_name="notes"), server) == "done"
    [request] = sent
    assert request.headers == {"Authorization": "Bearer notes-token", "Idempotency-Key": "thread:call"}


async def test_a_policy_may_rename_an_mcp_tool_and_the_call_still_names_the_servers_tool(
    base_url: str, stack_settings: Settings, notes: NotesServer
) -> None:
    token = _delegated(base_url, dev_issuer_key(stack_settings.data_dir), aud=notes.url)
    server = McpServer(name="notes", url=notes.url, list_scopes=("notes:read",), tools={"add_note": "save_note"})
    called: list[str] = []

    async def record(request: MCPToolCallRequest, handler: object) -> CallToolResult:
        called.append(request.name)
        return CallToolResult(content=[TextContent(type="text", text="recorded")])

    tools = {t.name: t for t in to_langchain_tools(server, await list_tools(server, access_token=token), authorize=record)}
    assert set(tools) == {"save_note", "list_notes", "delete_notes"}  # unnamed ones keep their names (the gate denies them)
    await tools["save_note"].ainvoke({"text": "x"})
    assert called == ["add_note"]
