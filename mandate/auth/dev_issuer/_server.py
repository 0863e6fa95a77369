"""The dev issuer's HTTP face: authlib's authorization server on Starlette, served as a FastAPI sub-app.

authlib has no Starlette integration, so this module adapts a Starlette request the way
``authlib/integrations/flask_oauth2/requests.py`` adapts a Flask one: the form body is read
asynchronously first, then the synchronous authlib server handles the request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import InsecureTransportError
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from joserfc.jwk import KeySet, RSAKey
from starlette.datastructures import ImmutableMultiDict

from mandate.auth.dev_issuer._directory import DevClient, DevUser
from mandate.auth.dev_issuer._grants import (
    ACR_MFA,
    ACR_PASSWORD,
    DevClientCredentialsGrant,
    DevPasswordGrant,
    GrantConfig,
    RegisteredClient,
    Subject,
    TokenExchangeGrant,
)
from mandate.auth.dev_issuer._keys import SIGNING_ALG, load_or_create_signing_key
from mandate.auth.errors import DevIssuerDisabledError

__all__ = ["ALLOWED_ENVS", "create_dev_issuer_app"]

ALLOWED_ENVS = frozenset({"dev", "test"})
"""Environments in which the dev issuer agrees to start."""

_FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_GRANTS = (DevPasswordGrant, DevClientCredentialsGrant, TokenExchangeGrant)


class _FormPayload(OAuth2Payload):  # type: ignore[misc]
    """The form parameters of a token request."""

    def __init__(self, form: ImmutableMultiDict[str, str]) -> None:
        self._form = form

    @property
    def data(self) -> ImmutableMultiDict[str, str]:
        return self._form

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return defaultdict(list, {name: self._form.getlist(name) for name in self._form})


class _StarletteOAuth2Request(OAuth2Request):  # type: ignore[misc]
    """A Starlette request whose form body has already been read, as authlib expects it."""

    def __init__(self, request: Request, form: ImmutableMultiDict[str, str]) -> None:
        super().__init__(method=request.method, uri=str(request.url), headers=request.headers)
        self._form = form
        self.payload = _FormPayload(form)

    @property
    def form(self) -> ImmutableMultiDict[str, str]:
        return self._form


async def _read_oauth2_request(request: Request) -> _StarletteOAuth2Request:
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    pairs: list[tuple[str, str]] = []
    if content_type == _FORM_CONTENT_TYPE:
        pairs = parse_qsl((await request.body()).decode("utf-8", errors="replace"), keep_blank_values=True)
    return _StarletteOAuth2Request(request, ImmutableMultiDict(pairs))


class _AccessTokenGenerator(JWTBearerTokenGenerator):  # type: ignore[misc]
    """RFC 9068 ``at+jwt`` access tokens carrying the subject's tenant, groups, roles and actor chain."""

    def __init__(self, *, issuer: str, key: RSAKey, audience: str, access_token_ttl: int) -> None:
        super().__init__(issuer, alg=SIGNING_ALG, expires_generator=access_token_ttl)
        self._jwks = KeySet([key])  # a key set makes joserfc put the key's kid in the header
        self._audience = audience

    def get_jwks(self) -> KeySet:
        return self._jwks

    def get_audiences(self, client: RegisteredClient, user: Subject | None, scope: str) -> str | list[str]:
        if user is not None and user.audience is not None:
            return user.audience
        return [self._audience]

    def get_acr(self, user: Subject | None) -> str | None:
        return user.acr if user is not None else None

    def get_amr(self, user: Subject | None) -> list[str] | None:
        return list(user.amr) if user is not None else None

    def get_auth_time(self, user: Subject | None) -> int | None:
        return user.auth_time if user is not None else None

    def get_extra_claims(
        self, client: RegisteredClient, grant_type: str, user: Subject | None, scope: str
    ) -> dict[str, Any]:
        if user is None:
            return {}
        claims: dict[str, Any] = {"groups": list(user.groups), "roles": list(user.roles)}
        if user.tenant is not None:
            claims["tenant"] = user.tenant
        if user.act is not None:
            claims["act"] = user.act
        if user.expires_at is not None:
            # authlib applies extra claims last: this caps an exchanged token's life at its subject's.
            claims["exp"] = user.expires_at
        return claims


class _DevAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """authlib's generic authorization server, answering with Starlette responses."""

    def __init__(self, *, config: GrantConfig, clients: Sequence[DevClient], generator: _AccessTokenGenerator) -> None:
        super().__init__()
        self.config = config
        self._clients = {client.client_id: RegisteredClient(registration=client) for client in clients}
        self.register_token_generator("default", generator)
        for grant in _GRANTS:
            self.register_grant(grant)

    def query_client(self, client_id: str) -> RegisteredClient | None:
        return self._clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Nothing to store: access tokens are self-contained JWTs and there are no refresh tokens."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal system here; authlib's grants still announce client authentication."""

    def create_oauth2_request(self, request: _StarletteOAuth2Request) -> _StarletteOAuth2Request:
        return request

    def handle_response(self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=dict(headers))


def _metadata(issuer_url: str, clients: Sequence[DevClient]) -> dict[str, Any]:
    return {
        "issuer": issuer_url,
        "token_endpoint": f"{issuer_url}/token",
        "jwks_uri": f"{issuer_url}/jwks",
        "grant_types_supported": [grant.GRANT_TYPE for grant in _GRANTS],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "id_token_signing_alg_values_supported": [SIGNING_ALG],
        "scopes_supported": sorted({scope for client in clients for scope in client.scopes}),
        "acr_values_supported": [ACR_PASSWORD, ACR_MFA],
    }


def create_dev_issuer_app(
    *,
    env: str,
    issuer_url: str,
    audience: str,
    key_path: Path,
    users: Sequence[DevUser],
    clients: Sequence[DevClient],
    access_token_ttl: int = 900,
    exchanged_token_ttl: int = 300,
) -> FastAPI:
    """Build the dev OAuth 2.0 / OIDC issuer, to be mounted at ``issuer_url`` (e.g. ``…/dev-idp``).

    Routes, relative to the mount: ``GET /.well-known/openid-configuration``,
    ``GET /.well-known/oauth-authorization-server``, ``GET /jwks`` and ``POST /token``
    (password, client_credentials and RFC 8693 token exchange).

    Args:
        env: The deployment environment; only ``dev`` and ``test`` are accepted.
        issuer_url: The issuer identifier (``iss``), which is also the mount's public URL.
        audience: ``aud`` of tokens from the password and client_credentials grants.
        key_path: The private signing JWK, created (mode 0600) if missing.
        users: Who may log in with the password grant.
        clients: The registered OAuth clients.
        access_token_ttl: Life of password and client_credentials tokens, in seconds.
        exchanged_token_ttl: Life of exchanged tokens, in seconds; never more than 300 nor more
            than the subject token has left.

    Returns:
        The issuer as a FastAPI application.

    Raises:
        DevIssuerDisabledError: If ``env`` is neither ``dev`` nor ``test``.
    """
    if env not in ALLOWED_ENVS:
        raise DevIssuerDisabledError(f"The dev issuer only runs in dev or test, not in {env!r}.")
    issuer_url = issuer_url.rstrip("/")
    key = load_or_create_signing_key(key_path)
    server = _DevAuthorizationServer(
        config=GrantConfig(
            issuer=issuer_url,
            signing_key=key,
            users={user.username: user for user in users},
            exchanged_token_ttl=exchanged_token_ttl,
        ),
        clients=clients,
        generator=_AccessTokenGenerator(
            issuer=issuer_url, key=key, audience=audience, access_token_ttl=access_token_ttl
        ),
    )
    metadata = _metadata(issuer_url, clients)
    jwks = {"keys": [key.as_dict(private=False)]}
    app = FastAPI(title="Mandate dev issuer", openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/.well-known/openid-configuration")
    @app.get("/.well-known/oauth-authorization-server")
    async def discovery() -> dict[str, Any]:
        return metadata

    @app.get("/jwks")
    async def jwks_document() -> dict[str, Any]:
        return jwks

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        try:
            oauth2_request = await _read_oauth2_request(request)
        except InsecureTransportError as error:
            return server.handle_error_response(None, error)
        return server.create_token_response(oauth2_request)

    return app
