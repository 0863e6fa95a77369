"""Readiness: can this replica serve? Postgres, OpenFGA and every trusted issuer's keys reachable, not draining."""

from __future__ import annotations

import asyncio

import httpx
from psycopg import Error as PsycopgError

from mandate.runtime.services import Services

__all__ = ["PROBE_TIMEOUT_SECONDS", "readiness"]

PROBE_TIMEOUT_SECONDS = 2.0


async def _postgres(services: Services) -> bool:
    try:
        async with services.pool.connection(timeout=PROBE_TIMEOUT_SECONDS) as conn:
            await conn.execute("SELECT 1")
        return True
    except (PsycopgError, TimeoutError, OSError):
        return False


async def _get_ok(http: httpx.AsyncClient, url: str) -> httpx.Response | None:
    try:
        response = await http.get(url, timeout=PROBE_TIMEOUT_SECONDS)
    except httpx.HTTPError:
        return None
    return response if response.status_code == 200 else None


async def _issuer_keys(http: httpx.AsyncClient, issuer: str) -> bool:
    """The issuer's discovery document names a JWKS that answers with keys."""
    discovery = await _get_ok(http, f"{issuer.rstrip('/')}/.well-known/openid-configuration")
    try:
        jwks_uri = discovery.json()["jwks_uri"] if discovery is not None else None
        keys = await _get_ok(http, str(jwks_uri)) if jwks_uri else None
        return keys is not None and bool(keys.json().get("keys"))
    except (ValueError, KeyError, AttributeError):
        return False


async def readiness(services: Services, *, draining: bool) -> dict[str, bool]:
    """Each dependency's check (``postgres``, ``openfga``, ``issuer:<id>``) and ``accepting`` (not draining)."""
    settings = services.settings
    names = ["postgres", "openfga", *(f"issuer:{i.id}" for i in settings.oidc_issuers)]
    results = await asyncio.gather(
        _postgres(services),
        _get_ok(services.http, f"{settings.fga_api_url.rstrip('/')}/healthz"),
        *(_issuer_keys(services.http, i.issuer) for i in settings.oidc_issuers),
    )
    checks = {name: bool(result) for name, result in zip(names, results, strict=True)}
    return {**checks, "accepting": not draining}
