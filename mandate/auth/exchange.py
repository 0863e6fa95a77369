"""The token broker: RFC 8693 token exchange for a tool call, done by authlib's OAuth 2 client.

The subject is the user's access token, the actor is the agent (authenticated by its client
credentials), the audience and scope are the tool's. The delegated token lives only in the
returned object, whose ``repr`` hides it; it is never written to state, logs or spans.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from opentelemetry import trace

from mandate.auth.errors import TokenExchangeError

__all__ = ["DelegatedToken", "TokenBroker"]

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@dataclass(frozen=True, kw_only=True, slots=True)
class DelegatedToken:
    """A short-lived, audience-bound token for one downstream call."""

    access_token: str = field(repr=False)
    """The bearer token; ``repr`` never shows it."""
    audience: str
    scopes: tuple[str, ...]
    expires_at: float


class TokenBroker:
    """Exchanges a user's token for a delegated one, acting as one agent client."""

    def __init__(
        self,
        *,
        token_endpoint: str,
        client_id: str,
        client_secret: str,
        tracer: trace.Tracer,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._token_endpoint = token_endpoint
        self._client_id = client_id
        self._client_secret = client_secret
        self._tracer = tracer
        self._transport = transport

    @property
    def actor(self) -> str:
        """The client id this broker acts as (the ``act`` subject of every token it obtains)."""
        return self._client_id

    async def exchange(self, subject_token: str, *, audience: str, scopes: Sequence[str]) -> DelegatedToken:
        """Obtain a delegated token for ``audience`` limited to ``scopes``.

        Raises:
            TokenExchangeError: The issuer refused (for example ``invalid_scope``) or was unreachable.
        """
        scope = " ".join(scopes)
        with self._tracer.start_as_current_span("mandate.token_exchange") as span:
            span.set_attribute("mandate.exchange.audience", audience)
            span.set_attribute("mandate.exchange.scopes", list(scopes))
            span.set_attribute("mandate.exchange.actor", self._client_id)
            # A fresh client per exchange: authlib keeps the last token on the client object,
            # and a shared one must never hold one user's token while serving another.
            async with AsyncOAuth2Client(
                client_id=self._client_id,
                client_secret=self._client_secret,
                token_endpoint_auth_method="client_secret_basic",
                transport=self._transport,
                timeout=10.0,
            ) as client:
                try:
                    token = await client.fetch_token(
                        self._token_endpoint,
                        grant_type=TOKEN_EXCHANGE_GRANT,
                        subject_token=subject_token,
                        subject_token_type=ACCESS_TOKEN_TYPE,
                        audience=audience,
                        scope=scope,
                    )
                except AuthlibBaseError as exc:
                    span.set_attribute("mandate.exchange.error", str(exc.error))
                    raise TokenExchangeError(f"The issuer refused the token exchange ({exc.error}).") from exc
                except (httpx.HTTPError, ValueError) as exc:
                    span.set_attribute("mandate.exchange.error", type(exc).__name__)
                    raise TokenExchangeError("The issuer could not be reached for a token exchange.") from exc
        granted = tuple(str(token.get("scope", scope)).split())
        return DelegatedToken(
            access_token=token["access_token"],
            audience=audience,
            scopes=granted,
            expires_at=time.time() + float(token.get("expires_in", 0)),
        )
