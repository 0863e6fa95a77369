"""A notes MCP server written with the official ``mcp`` SDK, as a team would write one for Mandate.

It is an OAuth resource server (MCP authorization spec): it serves its protected resource metadata
(RFC 9728) at ``/.well-known/oauth-protected-resource/mcp`` and accepts only tokens that its
issuer signed (checked against the issuer's JWKS), that are for exactly this server (``aud``),
that carry the scopes it needs, and that were delegated to an agent (``act``). Stateless Streamable
HTTP, so every request is authorized by its own token.

    NOTES_MCP_URL=http://127.0.0.1:8765/mcp NOTES_ISSUER=http://127.0.0.1:8000/dev-idp \\
        python examples/mcp_notes/server.py
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.fastmcp import FastMCP
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

READ, WRITE = "notes:read", "notes:write"


class DelegatedTokenVerifier:
    """Accepts a JWT access token only if the issuer signed it for this resource, with ``act``."""

    def __init__(self, *, issuer: str, resource: str, on_token: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self._issuer = issuer
        self._resource = resource
        self._keys: KeySet | None = None
        self._on_token = on_token

    async def _key_set(self) -> KeySet:
        if self._keys is None:
            async with httpx.AsyncClient(timeout=10) as client:
                discovery = (await client.get(f"{self._issuer}/.well-known/openid-configuration")).raise_for_status().json()
                self._keys = KeySet.import_key_set((await client.get(discovery["jwks_uri"])).raise_for_status().json())
        return self._keys

    async def verify_token(self, token: str) -> AccessToken | None:
        """The token's grant, or ``None`` (401) for any token this server must not accept."""
        try:
            claims = jwt.decode(token, await self._key_set(), algorithms=["RS256"]).claims
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self._issuer},
                aud={"essential": True, "value": self._resource},
                exp={"essential": True},
                sub={"essential": True},
                act={"essential": True},
            ).validate(claims)
        except (JoseError, ValueError):
            return None
        if self._on_token is not None:
            self._on_token(token, claims)
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or ""),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            resource=self._resource,
            subject=str(claims["sub"]),
            claims=claims,
        )


def create_server(*, url: str, issuer: str, on_token: Callable[[str, dict[str, Any]], None] | None = None) -> Starlette:
    """The notes server at ``url`` (its Streamable HTTP endpoint and resource identifier), trusting ``issuer``."""
    notes: dict[str, list[str]] = {}
    host = urlsplit(url)
    mcp = FastMCP(
        "notes",
        stateless_http=True,
        json_response=True,
        streamable_http_path=host.path,
        token_verifier=DelegatedTokenVerifier(issuer=issuer, resource=url, on_token=on_token),
        auth=AuthSettings(issuer_url=issuer, resource_server_url=url, required_scopes=[READ], validate_token_resource=True),
        transport_security=TransportSecuritySettings(allowed_hosts=[host.netloc]),
    )

    def _user(needs: str) -> str:
        token = get_access_token()
        if token is None or needs not in token.scopes or token.subject is None:
            raise PermissionError(f"this tool needs {needs}")
        return token.subject

    @mcp.tool()
    def add_note(text: str) -> str:
        """Add a note to the user's notebook."""
        user = _user(WRITE)
        notes.setdefault(user, []).append(text)
        return f"Note {len(notes[user])} saved."

    @mcp.tool()
    def list_notes() -> list[str]:
        """The user's notes."""
        return list(notes.get(_user(READ), []))

    @mcp.tool()
    def delete_notes() -> str:
        """Delete all of the user's notes (no policy names it: Mandate denies it)."""
        notes.pop(_user(WRITE), None)
        return "Deleted."

    app = mcp.streamable_http_app()
    app.state.notes = notes
    return app


if __name__ == "__main__":
    import uvicorn

    server_url = os.environ.get("NOTES_MCP_URL", "http://127.0.0.1:8765/mcp")
    parts = urlsplit(server_url)
    uvicorn.run(create_server(url=server_url, issuer=os.environ["NOTES_ISSUER"]), host=parts.hostname or "127.0.0.1", port=parts.port or 80)
