"""The token broker: RFC 8693 token exchange for a tool call, done by authlib's OAuth 2 client.

The subject is the user's access token, the actor is the agent (authenticated by its client
credentials), the target and scope are the tool's. The delegated token lives only in the
returned object, whose ``repr`` hides it; it is never written to state, logs or spans.

**Naming the target.** A target that is an absolute ``http(s)`` URL (every tool API and MCP server
of a project) is a resource: the request names it with RFC 8707 ``resource``, as RFC 8693 §2.1 and
the MCP authorization spec ask, so the token is for exactly that resource. The same URL is sent as
``audience`` too, because Keycloak 26's standard token exchange does not implement ``resource``
(keycloak/keycloak#36870, open) and binds ``aud`` from ``audience`` only; an issuer that honours both
must (and the dev issuer does) refuse a request whose two differ, so sending both asks for one
thing. Any other target (a logical name) goes as ``audience`` alone.

Delegated tokens are cached in memory per (issuer, user, actor, audience, scope) until shortly
before they expire. The user is part of the key, so one user's token is never handed to another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from opentelemetry import trace

from mandate.auth.errors import TokenExchangeError

__all__ = ["DelegatedToken", "TokenBroker", "is_resource", "target_parameters"]

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
REFRESH_MARGIN_SECONDS = 30.0
"""A cached delegated token is replaced when it has less than this left."""


def is_resource(target: str) -> bool:
    """Whether ``target`` is an RFC 8707 resource indicator: an absolute ``http(s)`` URL with a host and no fragment."""
    parts = urlsplit(target)
    return parts.scheme in ("https", "http") and bool(parts.netloc) and "#" not in target


@dataclass(frozen=True, kw_only=True, slots=True)
class DelegatedToken:
    """A short-lived, audience-bound token for one downstream call."""

    access_token: str = field(repr=False)
    """The bearer token; ``repr`` never shows it."""
    audience: str
    """The target it was asked for (the ``resource`` and ``audience`` of the request, when a URL)."""
    scopes: tuple[str, ...]
    expires_at: float


def target_parameters(target: str) -> dict[str, str]:
    """The form parameters naming ``target`` in a token exchange (see the module docstring)."""
    if is_resource(target):
        return {"resource": target, "audience": target}
    return {"audience": target}


class TokenBroker:
    """Exchanges a user's token for a delegated one, acting as one agent client."""

    def __init__(
        self,
        *,
        token_endpoint: str,
        client_id: str,
        client_secret: str,
        tracer: trace.Tracer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._token_endpoint = token_endpoint
        self._client_id = client_id
        self._client_secret = client_secret
        self._tracer = tracer
        self._clock = clock
        self._cache: dict[tuple[str, str, str, str, str], DelegatedToken] = {}
        self._lock = asyncio.Lock()

    @property
    def actor(self) -> str:
        """The client id this broker acts as (the ``act`` subject of every token it obtains)."""
        return self._client_id

    async def exchange(
        self, subject_token: str, *, issuer: str, subject: str, audience: str, scopes: Sequence[str]
    ) -> DelegatedToken:
        """A delegated token for ``audience`` limited to ``scopes``, from the cache or the issuer.

        Args:
            subject_token: The user's access token.
            issuer: Issuer of the user's token (part of the cache key).
            subject: The user's ``sub`` (part of the cache key: never shared across users).
            audience: The downstream API or MCP server; an absolute URL is asked for as a resource
                (RFC 8707 ``resource``, repeated as ``audience``; see the module docstring).
            scopes: The scopes the call needs.

        Raises:
            TokenExchangeError: The issuer refused (for example ``invalid_scope``) or was unreachable.
        """
        scope = " ".join(sorted(scopes))
        key = (issuer, subject, self._client_id, audience, scope)
        with self._tracer.start_as_current_span("mandate.token_exchange") as span:
            span.set_attribute("mandate.exchange.audience", audience)
            span.set_attribute("mandate.exchange.resource", is_resource(audience))
            span.set_attribute("mandate.exchange.scopes", scope.split())
            span.set_attribute("mandate.exchange.actor", self._client_id)
            async with self._lock:
                cached = self._cache.get(key)
                fresh = cached is not None and cached.expires_at - self._clock() > REFRESH_MARGIN_SECONDS
                span.set_attribute("mandate.exchange.cached", fresh)
                if cached is not None and fresh:
                    return cached
                try:
                    token = await self._exchange(subject_token, audience=audience, scope=scope)
                except TokenExchangeError as exc:
                    span.set_attribute("mandate.exchange.error", exc.code)
                    raise
                self._cache[key] = token
                return token

    async def _exchange(self, subject_token: str, *, audience: str, scope: str) -> DelegatedToken:
        # A fresh client per exchange: authlib keeps the last token on the client object,
        # and a shared one must never hold one user's token while serving another.
        async with AsyncOAuth2Client(
            client_id=self._client_id,
            client_secret=self._client_secret,
            token_endpoint_auth_method="client_secret_basic",
            timeout=10.0,
        ) as client:
            try:
                token = await client.fetch_token(
                    self._token_endpoint,
                    grant_type=TOKEN_EXCHANGE_GRANT,
                    subject_token=subject_token,
                    subject_token_type=ACCESS_TOKEN_TYPE,
                    **target_parameters(audience),
                    scope=scope,
                )
            except AuthlibBaseError as exc:
                raise TokenExchangeError(f"The issuer refused the token exchange ({exc.error}).") from exc
            except (httpx.HTTPError, ValueError) as exc:
                raise TokenExchangeError("The issuer could not be reached for a token exchange.") from exc
        granted = tuple(str(token.get("scope", scope)).split())
        return DelegatedToken(
            access_token=token["access_token"],
            audience=audience,
            scopes=granted,
            expires_at=self._clock() + float(token.get("expires_in", 0)),
        )
