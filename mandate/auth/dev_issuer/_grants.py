"""The dev issuer's token grants: password (with the dev OTP), client credentials, token exchange.

Each grant is an authlib grant class. authlib builds one per request as ``grant(request, server)``,
so everything a grant needs beyond the request lives on the server as :class:`GrantConfig`.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.grants import (
    BaseGrant,
    ClientCredentialsGrant,
    ResourceOwnerPasswordCredentialsGrant,
    TokenEndpointMixin,
)
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from mandate.auth.dev_issuer._directory import DEMO_PASSWORD, DEV_OTP, TOKEN_EXCHANGE_GRANT, DevClient, DevUser
from mandate.auth.dev_issuer._keys import SIGNING_ALG

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ACR_MFA",
    "ACR_PASSWORD",
    "MAX_EXCHANGED_TOKEN_TTL",
    "DevClientCredentialsGrant",
    "DevPasswordGrant",
    "GrantConfig",
    "RegisteredClient",
    "Subject",
    "TokenExchangeGrant",
]

ACR_PASSWORD = "urn:mandate:acr:pwd"
"""``acr`` of a password-only login."""
ACR_MFA = "urn:mandate:acr:mfa"
"""``acr`` of a login with password and the dev OTP."""
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
"""RFC 8693 token type of every token this issuer accepts and issues in an exchange."""
MAX_EXCHANGED_TOKEN_TTL = 300
"""Upper bound, in seconds, on the life of an exchanged token, whatever the configuration says."""

_SECRET_METHODS = ["client_secret_basic", "client_secret_post"]


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """Raised when a token exchange asks for a target the client may not act for, or names a resource
    that is not an absolute ``http(s)`` URL without a fragment (RFC 8693 §2.2.2, RFC 8707 §2)."""

    error = "invalid_target"


@dataclass(frozen=True, kw_only=True, slots=True)
class Subject:
    """The resource owner a token is issued for: a fresh login, or the subject of an exchanged token."""

    sub: str
    """The ``sub`` claim."""
    tenant: str | None
    """The ``tenant`` claim; ``None`` when the subject token had none."""
    groups: tuple[str, ...]
    """The ``groups`` claim."""
    roles: tuple[str, ...]
    """The ``roles`` claim."""
    acr: str | None
    """How the user authenticated (``acr``)."""
    amr: tuple[str, ...]
    """Methods the user authenticated with (``amr``)."""
    auth_time: int | None
    """When the user authenticated (epoch seconds)."""
    act: dict[str, Any] | None = None
    """Actor chain of an exchanged token (RFC 8693 §4.1), current actor outermost."""
    audience: str | None = None
    """Audience of an exchanged token; ``None`` means the issuer's default audience."""
    expires_at: int | None = None
    """``exp`` of an exchanged token; ``None`` means the default access token lifetime."""

    def get_user_id(self) -> str:
        """The subject identifier, as authlib's token generator asks for it."""
        return self.sub


@dataclass(frozen=True, kw_only=True, slots=True)
class GrantConfig:
    """What the grants need from the issuer: who its users are and how to check its own tokens."""

    issuer: str
    """This issuer's identifier (``iss``)."""
    signing_key: RSAKey
    """The key this issuer signs with; presented tokens must verify with it."""
    users: Mapping[str, DevUser]
    """Users by username."""
    exchanged_token_ttl: int
    """Configured life of an exchanged token (capped by :data:`MAX_EXCHANGED_TOKEN_TTL`)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RegisteredClient(ClientMixin):  # type: ignore[misc]
    """A :class:`DevClient` as authlib sees it."""

    registration: DevClient
    """The client's registration."""

    def get_client_id(self) -> str:
        """The client identifier."""
        return self.registration.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        """Whether ``client_secret`` is this confidential client's secret (constant time)."""
        secret = self.registration.secret
        return secret is not None and hmac.compare_digest(client_secret.encode(), secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Public clients authenticate with ``none``, confidential ones only with their secret."""
        if self.registration.secret is None:
            return method == "none"
        return method in _SECRET_METHODS

    def check_grant_type(self, grant_type: str) -> bool:
        """Whether the client is registered for ``grant_type``."""
        return grant_type in self.registration.grant_types

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The scope to issue: all client scopes if none was asked for, ``None`` if it asks too much."""
        if not scope:
            return " ".join(self.registration.scopes)
        requested = scope.split()
        if not set(requested) <= set(self.registration.scopes):
            return None
        return " ".join(dict.fromkeys(requested))


class _ClientScopeMixin:
    """Checks a requested scope against the client's registered scopes, not a server-wide list."""

    def validate_requested_scope(self) -> None:
        if self.client.get_allowed_scope(self.request.payload.scope) is None:  # type: ignore[attr-defined]
            raise InvalidScopeError("The requested scope exceeds the scopes of this client.")


class DevPasswordGrant(_ClientScopeMixin, ResourceOwnerPasswordCredentialsGrant):  # type: ignore[misc]
    """Password grant; the optional ``otp`` form field, when it is :data:`DEV_OTP`, makes the login MFA."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["none", *_SECRET_METHODS]

    def authenticate_user(self, username: str, password: str) -> Subject:
        """Check the user's password and optional OTP; the resulting subject records how.

        Raises:
            InvalidGrantError: For an unknown user, a wrong password or a wrong OTP.
        """
        config: GrantConfig = self.server.config
        user = config.users.get(username)
        if user is None or not hmac.compare_digest(password.encode(), DEMO_PASSWORD.encode()):
            raise InvalidGrantError("Invalid username or password.")
        otp = self.request.form.get("otp")
        if otp is None:
            acr, amr = ACR_PASSWORD, ("pwd",)
        elif hmac.compare_digest(otp.encode(), DEV_OTP.encode()):
            acr, amr = ACR_MFA, ("pwd", "otp")
        else:
            raise InvalidGrantError("Invalid one-time password.")
        return Subject(
            sub=user.username,
            tenant=user.tenant,
            groups=user.groups,
            roles=user.roles,
            acr=acr,
            amr=amr,
            auth_time=int(time.time()),
        )


class DevClientCredentialsGrant(_ClientScopeMixin, ClientCredentialsGrant):  # type: ignore[misc]
    """Client credentials grant, for confidential clients only."""

    TOKEN_ENDPOINT_AUTH_METHODS = _SECRET_METHODS


class TokenExchangeGrant(BaseGrant, TokenEndpointMixin):  # type: ignore[misc]
    """RFC 8693 token exchange: the authenticated client acts for the subject of a token we issued.

    Only downscoping is allowed, only towards the client's registered audiences, and the issued
    token names the client in a (possibly nested) ``act`` claim. The target is named by RFC 8707
    ``resource`` or by ``audience`` (exactly one of each at most); a request naming both must name
    the same target in both, and the issued token's ``aud`` is that target.
    """

    GRANT_TYPE = TOKEN_EXCHANGE_GRANT
    TOKEN_ENDPOINT_AUTH_METHODS = _SECRET_METHODS

    def validate_token_request(self) -> None:
        """Authenticate the client and check the subject, actor, audience and scope of the request.

        Raises:
            OAuth2Error: ``invalid_client``, ``unauthorized_client``, ``invalid_request``,
                ``invalid_grant``, ``invalid_target`` or ``invalid_scope``.
        """
        client: RegisteredClient = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("The client is not allowed to exchange tokens.")
        self.request.client = client
        config: GrantConfig = self.server.config
        now = int(time.time())
        claims = self._verified_token("subject_token", config=config, now=now)
        if "actor_token" in self.request.form:
            actor = self._verified_token("actor_token", config=config, now=now)
            if actor["sub"] != client.get_client_id():
                raise InvalidGrantError("The actor token does not identify the authenticated client.")
        audience = self._requested_audience(client)
        self.request.scope = self._requested_scope(client, granted=claims.get("scope", ""))
        expires_at = min(now + min(config.exchanged_token_ttl, MAX_EXCHANGED_TOKEN_TTL), claims["exp"])
        if expires_at <= now:
            raise InvalidGrantError("The subject_token has expired.")
        act: dict[str, Any] = {"sub": client.get_client_id()}
        if "act" in claims:
            act["act"] = claims["act"]
        self.request.user = Subject(
            sub=claims["sub"],
            tenant=claims.get("tenant"),
            groups=tuple(claims.get("groups", ())),
            roles=tuple(claims.get("roles", ())),
            acr=claims.get("acr"),
            amr=tuple(claims.get("amr", ())),
            auth_time=claims.get("auth_time"),
            act=act,
            audience=audience,
            expires_at=expires_at,
        )
        self.expires_in = expires_at - now

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Issue the exchanged access token.

        Returns:
            Status, RFC 8693 §2.2.1 response body and headers.
        """
        token: dict[str, Any] = self.generate_token(
            user=self.request.user,
            scope=self.request.scope,
            expires_in=self.expires_in,
            include_refresh_token=False,
        )
        token["issued_token_type"] = ACCESS_TOKEN_TYPE
        return 200, token, self.TOKEN_RESPONSE_HEADER

    def _verified_token(self, name: str, *, config: GrantConfig, now: int) -> dict[str, Any]:
        form = self.request.form
        token = form.get(name)
        if not token:
            raise InvalidRequestError(f"Missing '{name}' in request.")
        if form.get(f"{name}_type") != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError(f"'{name}_type' must be '{ACCESS_TOKEN_TYPE}'.")
        return verify_issued_token(token, config=config, now=now, name=name)

    def _requested_audience(self, client: RegisteredClient) -> str:
        form = self.request.payload.datalist
        resources, audiences = form.get("resource", []), form.get("audience", [])
        if len(resources) > 1 or len(audiences) > 1 or not (resources or audiences):
            raise InvalidRequestError("Exactly one 'resource' or 'audience' is required.")
        if resources and not is_resource_indicator(resources[0]):
            raise InvalidTargetError("The 'resource' must be an absolute http(s) URL without a fragment.")
        if resources and audiences and audiences[0] != resources[0]:
            raise InvalidRequestError("'resource' and 'audience' name different targets.")
        target = str((resources or audiences)[0])
        if target not in client.registration.exchange_audiences:
            raise InvalidTargetError("The client may not act for the requested audience.")
        return target

    def _requested_scope(self, client: RegisteredClient, *, granted: str) -> str:
        scope = self.request.form.get("scope")
        if not scope:
            raise InvalidRequestError("Missing 'scope' in request.")
        allowed = client.get_allowed_scope(scope)
        if allowed is None or not set(scope.split()) <= set(granted.split()):
            raise InvalidScopeError("A token exchange may only narrow the subject token's scope.")
        return allowed


def is_resource_indicator(value: str) -> bool:
    """Whether ``value`` is a resource indicator this issuer accepts (RFC 8707 §2): an absolute
    ``https`` or ``http`` URL with a host, no fragment, no user info, and no whitespace."""
    if not value or value != value.strip() or any(c.isspace() for c in value) or "#" in value:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("https", "http") and bool(parts.hostname) and "@" not in parts.netloc


def verify_issued_token(token: str, *, config: GrantConfig, now: int, name: str) -> dict[str, Any]:
    """Verify that ``token`` is an unexpired ``at+jwt`` access token signed by this issuer.

    Args:
        token: The compact JWT as presented.
        config: The issuer's identifier and signing key.
        now: The current time, in epoch seconds.
        name: The form field the token came in, for the error message (the token is never echoed).

    Returns:
        The verified claims.

    Raises:
        InvalidGrantError: If the token is malformed, not signed with this issuer's key (or signed
            with another algorithm, ``none`` included), not of type ``at+jwt``, from another issuer,
            or expired.
    """
    registry = jwt.JWTClaimsRegistry(
        now=now,
        iss={"essential": True, "value": config.issuer},
        sub={"essential": True},
        exp={"essential": True},
    )
    try:
        verified = jwt.decode(token, config.signing_key, algorithms=[SIGNING_ALG])
        registry.validate(verified.claims)
    except (JoseError, ValueError) as exc:
        raise InvalidGrantError(f"The {name} is not a valid access token of this issuer.") from exc
    if verified.header.get("typ") != "at+jwt":
        raise InvalidGrantError(f"The {name} is not an 'at+jwt' access token.")
    return dict(verified.claims)
