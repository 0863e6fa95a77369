"""The example notes MCP server (``examples/mcp_notes``) on a loopback port, recording the tokens it received."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from examples.mcp_notes.server import create_server
from tests.utils.servers import free_port, serve_in_thread


@dataclass(frozen=True, kw_only=True, slots=True)
class NotesServer:
    """A running notes server."""

    url: str
    """Its Streamable HTTP endpoint and resource identifier."""
    received: list[str] = field(default_factory=list)
    """Every ``Authorization`` header it received, accepted or not, in order."""
    accepted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Every token it accepted, raw and as claims, in order."""
    notes: dict[str, list[str]] = field(default_factory=dict)
    """Its notebooks by user (``sub``)."""


def _recording(app: ASGIApp, received: list[str]) -> ASGIApp:
    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            received.extend(value.decode() for name, value in scope["headers"] if name == b"authorization")
        await app(scope, receive, send)

    return asgi


@contextmanager
def notes_server(*, issuer: str, believed_url: str | None = None) -> Iterator[NotesServer]:
    """Serve the notes server trusting ``issuer`` on a free port; ``believed_url`` is the resource it
    names in its metadata if not its own URL (a misconfigured server)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    received: list[str] = []
    accepted: list[tuple[str, dict[str, Any]]] = []
    app = create_server(url=believed_url or url, issuer=issuer, on_token=lambda token, claims: accepted.append((token, claims)))
    with serve_in_thread(_recording(app, received), port=port):
        yield NotesServer(url=url, received=received, accepted=accepted, notes=app.state.notes)
