"""Bearer token verification: a JWT from a trusted issuer becomes a :class:`Principal`.

A token is hostile input until its signature verifies, and its claims stay suspect after. It is
parsed here, strictly (length, shape, base64url, UTF-8, JSON without duplicate keys or non-finite
numbers, the JSON type of every field read), before a library sees it; every refusal is a
:class:`TokenError` whose message is a fixed text, so no input yields a 500 or is echoed back.

Keys come only from each issuer's JWKS, found by OIDC discovery, and are cached per issuer:

- a request whose key is cached uses it at once: no lock is held across network I/O, and no
  such request waits for a fetch in progress;
- the cached set lives as long as the JWKS response's ``Cache-Control: max-age`` says, clamped to
  the issuer's bounds; half way through, a request starts a refresh in the background, and at the
  end the set is dropped, so a key removed at the issuer stops being trusted within that lifetime;
- an unknown ``kid`` causes at most one fetch per cooldown, and a failed fetch none until the
  cooldown has passed, so neither a flood of random key ids nor a dead issuer is hammered;
- every fetch (discovery and JWKS together) has one timeout: a request that needs keys waits at
  most that long, then fails closed with :class:`IssuerUnavailableError`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import Key, import_key
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from mandate.auth.errors import (
    ClientNotAllowedError,
    DisallowedAlgorithmError,
    ExpiredTokenError,
    InvalidClaimsError,
    InvalidSignatureError,
    IssuerUnavailableError,
    MalformedTokenError,
    MissingScopeError,
    TenantNotAllowedError,
    TokenTooLargeError,
    UnknownKeyError,
    UntrustedIssuerError,
    WrongAudienceError,
    WrongTokenTypeError,
)
from mandate.auth.principal import Principal

__all__ = ["TokenVerifier", "TrustedIssuer"]

_log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 16 * 1024
"""Longest bearer token accepted; a longer one is refused before it is parsed."""
MAX_CLOCK_SKEW_SECONDS = 60
"""Tolerance for ``nbf`` and ``iat`` in the future; ``exp`` gets none."""
MAX_NUMERIC_DATE = 2**53
"""Beyond this a time claim is refused: it could not be stored or compared exactly."""
JWKS_REFETCH_COOLDOWN_SECONDS = 30.0
"""Least time between two fetches caused by unknown ``kid`` values, and after a failed fetch."""
JWKS_FETCH_TIMEOUT_SECONDS = 5.0
"""Longest a fetch of discovery and JWKS may take, and so the longest a request waits for keys."""
CONNECT_ATTEMPTS = 6
"""Tries of one discovery or key-set request whose connection is refused (0.1 s apart, doubling to 1 s: 2.5 s in all)."""
JWKS_DEFAULT_LIFETIME_SECONDS = 300.0
"""Lifetime of a key set whose response has no ``max-age`` (before clamping)."""
JWKS_MIN_LIFETIME_SECONDS = 60.0
"""Default lower bound of a key set's lifetime (``no-cache`` and tiny ``max-age`` values get this)."""
JWKS_MAX_LIFETIME_SECONDS = 3600.0
"""Default upper bound of a key set's lifetime: a removed key is trusted at most this long."""
AT_JWT_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_GENERIC_JWT_TYPES = frozenset({"jwt", "application/jwt"})
_ID_TOKEN_CLAIMS = ("nonce", "at_hash", "c_hash", "s_hash")
"""Claims only ID tokens carry (OIDC Core 2, 3.3.2.11, FAPI)."""
_KEY_TYPE_BY_ALG_PREFIX = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
"""Asymmetric algorithm families and their key type; ``none`` and HS* are in no family."""
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
"""Compact JWS: base64url header and payload, signature empty only for ``alg: none`` (refused later)."""
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True, slots=True)
class TrustedIssuer:
    """An issuer on the allow-list, with the algorithms and access-token rules pinned for it."""

    issuer: str
    """Exact ``iss`` value."""
    key: str
    """Short key that qualifies this issuer's users in OpenFGA (``user:<key>|<sub>``)."""
    tenants: frozenset[str]
    """Tenants this issuer may assert; a token naming any other tenant is refused."""
    algorithms: tuple[str, ...] = ("RS256",)
    """Asymmetric algorithms accepted from this issuer; ``none`` and HS* are always refused."""
    require_at_jwt: bool = True
    """Enforce ``typ: at+jwt`` (RFC 9068); otherwise the header ``typ`` must be absent or a plain JWT."""
    tenant_claim: str = "tenant"
    """Claim that carries the tenant id."""
    client_ids: frozenset[str] = frozenset()
    """Clients whose tokens are accepted (``client_id``, else ``azp``); empty accepts any client."""
    typ_claim: str | None = None
    """Value the ``typ`` claim (not header) must have, e.g. ``Bearer`` for Keycloak; ``None`` skips it."""
    required_scopes: frozenset[str] = frozenset()
    """Scopes every accepted token must carry (``scope`` or ``scp``); ID tokens carry none."""
    jwks_min_lifetime: float = JWKS_MIN_LIFETIME_SECONDS
    """Shortest time a fetched key set is kept, whatever its ``max-age`` says."""
    jwks_max_lifetime: float = JWKS_MAX_LIFETIME_SECONDS
    """Longest time a fetched key set is kept: the bound on trusting a key the issuer removed."""


@dataclass(kw_only=True, slots=True)
class _IssuerKeys:
    """One issuer's cached keys and the times that rate-limit fetching them (clock seconds)."""

    keys: dict[str, Key] | None = None
    """Signing keys by ``kid``; ``None`` until a fetch succeeds."""
    refresh_at: float = -math.inf
    """From here on a request starts a background refresh (half way through the set's lifetime)."""
    expires_at: float = -math.inf
    """From here on the set is not trusted: requests wait for a fresh one."""
    retry_at: float = -math.inf
    """No fetch before this (set after a failure)."""
    kid_refetch_at: float = -math.inf
    """No fetch for an unknown ``kid`` before this."""
    fetching: asyncio.Task[bool] | None = None
    """The fetch in progress, if any; it never raises and says whether it succeeded."""


class TokenVerifier:
    """Verifies access tokens from trusted issuers for one audience."""

    def __init__(
        self,
        *,
        issuers: Sequence[TrustedIssuer],
        audience: str,
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
        refetch_cooldown: float = JWKS_REFETCH_COOLDOWN_SECONDS,
        fetch_timeout: float = JWKS_FETCH_TIMEOUT_SECONDS,
    ) -> None:
        """Create a verifier; keys are fetched on first use.

        Args:
            issuers: The allow-list.
            audience: The ``aud`` every accepted token must name.
            http: The client that fetches discovery documents and key sets.
            clock: Epoch seconds; times key caching and, unless ``verify`` is given ``now``, claims.
            refetch_cooldown: Least seconds between fetches caused by unknown key ids, and after a
                failed fetch.
            fetch_timeout: Most seconds one fetch (discovery and JWKS) may take.
        """
        self._issuers = {trusted.issuer: trusted for trusted in issuers}
        self._audience = audience
        self._http = http
        self._clock = clock
        self._cooldown = refetch_cooldown
        self._fetch_timeout = fetch_timeout
        self._keys = {name: _IssuerKeys() for name in self._issuers}

    @property
    def audience(self) -> str:
        """The audience every accepted token must name."""
        return self._audience

    async def verify(self, token: str, *, now: float | None = None) -> Principal:
        """Verify ``token`` and build the principal it speaks for.

        Args:
            token: The compact JWT from the ``Authorization: Bearer`` header.
            now: The time to validate claims against (tests fix it); defaults to the clock.

        Returns:
            The verified principal.

        Raises:
            TokenError: A subclass naming exactly what is wrong with the token.
            IssuerUnavailableError: The issuer's keys could not be fetched in time (fail closed).
        """
        now = self._clock() if now is None else now
        header, claims = _parse(token)
        iss = claims.get("iss")
        trusted = self._issuers.get(iss) if isinstance(iss, str) else None
        if trusted is None:
            raise UntrustedIssuerError("The token's issuer is not trusted by this service.")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in trusted.algorithms or _key_type(alg) is None:
            raise DisallowedAlgorithmError("The token's algorithm is not accepted for its issuer.")
        if "crit" in header:  # RFC 7515 4.1.11: we understand no extension, so none may be critical
            raise MalformedTokenError("The token requires an extension this service does not support.")
        _check_header_type(header.get("typ"), trusted)
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise UnknownKeyError("The token names no signing key.")
        key = await self._key_for(trusted, kid)
        if key.key_type != _key_type(alg) or key.get("alg") not in (None, alg):
            raise UnknownKeyError("The token's signing key does not fit its algorithm.")
        try:
            jws.deserialize_compact(token, key, algorithms=[alg])
        except BadSignatureError as exc:
            raise InvalidSignatureError("The token's signature is invalid.") from exc
        except (JoseError, ValueError) as exc:
            raise MalformedTokenError("The token could not be decoded.") from exc
        _validate_claims(claims, audience=self._audience, now=now)
        _check_access_token(claims, trusted)
        return _principal_from(claims, trusted)

    async def _key_for(self, trusted: TrustedIssuer, kid: str) -> Key:
        state = self._keys[trusted.issuer]
        now = self._clock()
        if state.keys is not None and now < state.expires_at:
            if now >= state.refresh_at:
                self._start_fetch(trusted, state, now)  # in the background: this request does not wait
            key = state.keys.get(kid)
            if key is not None:
                return key
            if state.fetching is None:  # joining a fetch in progress costs the issuer nothing
                if now < state.kid_refetch_at or now < state.retry_at:
                    raise UnknownKeyError("The token's signing key is not published by its issuer.")
                state.kid_refetch_at = now + self._cooldown
        await self._fetched(trusted, state, now)
        key = state.keys.get(kid) if state.keys is not None else None
        if key is None:
            raise UnknownKeyError("The token's signing key is not published by its issuer.")
        return key

    async def _fetched(self, trusted: TrustedIssuer, state: _IssuerKeys, now: float) -> None:
        """Wait for a fetch (joining the one in progress); fail closed unless it left a live key set."""
        task = state.fetching or self._start_fetch(trusted, state, now)
        # Shielded: a caller that gives up (client gone) must not cancel a fetch others wait for.
        succeeded = task is not None and await asyncio.shield(task)
        if not succeeded or state.keys is None or self._clock() >= state.expires_at:
            raise IssuerUnavailableError("The token issuer's keys could not be fetched.")

    def _start_fetch(self, trusted: TrustedIssuer, state: _IssuerKeys, now: float) -> asyncio.Task[bool] | None:
        if state.fetching is None and now >= state.retry_at:
            state.fetching = asyncio.create_task(self._refresh(trusted, state), name=f"jwks:{trusted.key}")
        return state.fetching

    async def _refresh(self, trusted: TrustedIssuer, state: _IssuerKeys) -> bool:
        try:
            async with asyncio.timeout(self._fetch_timeout):
                keys, lifetime = await self._fetch_jwks(trusted)
        except (IssuerUnavailableError, TimeoutError) as exc:
            cause = exc.__cause__ or exc
            _log.warning("JWKS fetch for issuer %r failed (%s)", trusted.key, type(cause).__name__)
            state.retry_at = self._clock() + self._cooldown
            return False
        else:
            fetched_at = self._clock()
            state.keys = keys
            state.refresh_at = fetched_at + lifetime / 2
            state.expires_at = fetched_at + lifetime
            return True
        finally:
            state.fetching = None

    async def _fetch_jwks(self, trusted: TrustedIssuer) -> tuple[dict[str, Key], float]:
        """The issuer's signing keys by ``kid``, and how long to keep them."""
        # OIDC Discovery 4: a trailing "/" of the issuer is removed before the well-known path.
        discovery, _ = await self._get_json(f"{trusted.issuer.rstrip('/')}/.well-known/openid-configuration")
        jwks_uri = discovery.get("jwks_uri")
        if discovery.get("issuer") != trusted.issuer or not isinstance(jwks_uri, str):
            raise IssuerUnavailableError("The issuer's discovery document names another issuer or no key set.")
        jwks, response = await self._get_json(jwks_uri)
        listed = jwks.get("keys")
        if not isinstance(listed, list):
            raise IssuerUnavailableError("The issuer's key set is malformed.")
        return _signing_keys(listed), _lifetime(response.headers.get("cache-control", ""), trusted)

    async def _get_json(self, url: str) -> tuple[dict[str, Any], httpx.Response]:
        try:
            # A refused connection is retried briefly (an issuer restarting, or Mandate's own dev issuer
            # a moment before its server listens); the whole fetch stays under the fetch timeout.
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(httpx.ConnectError), stop=stop_after_attempt(CONNECT_ATTEMPTS),
                wait=wait_exponential(multiplier=0.1, max=1.0), reraise=True,
            ):
                with attempt:
                    response = await self._http.get(url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            raise IssuerUnavailableError("The token issuer's keys could not be fetched.") from exc
        if not isinstance(document, dict):
            raise IssuerUnavailableError("The issuer answered with something other than a JSON object.")
        return document, response


def _signing_keys(listed: list[Any]) -> dict[str, Key]:
    """Usable public signing keys by ``kid``; others are skipped, so one odd key cannot break the set."""
    keys: dict[str, Key] = {}
    for item in listed:
        if not isinstance(item, dict) or not isinstance(item.get("kid"), str) or item.get("use", "sig") != "sig":
            continue
        if item.get("kty") not in _KEY_TYPE_BY_ALG_PREFIX.values() or "d" in item:
            continue  # symmetric keys never verify our tokens, and a published private key is a mistake
        try:
            keys.setdefault(item["kid"], import_key(item))
        except (JoseError, ValueError, TypeError, KeyError):
            continue
    return keys


def _lifetime(cache_control: str, trusted: TrustedIssuer) -> float:
    """Seconds to keep a key set: its ``max-age`` (``no-cache`` is 0), clamped to the issuer's bounds."""
    directives = cache_control.lower()
    found = _MAX_AGE.search(directives)
    if "no-cache" in directives or "no-store" in directives:
        seconds = 0.0
    elif found is not None:
        seconds = float(found.group(1))
    else:
        seconds = JWKS_DEFAULT_LIFETIME_SECONDS
    return min(max(seconds, trusted.jwks_min_lifetime), trusted.jwks_max_lifetime)


def _parse(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, strictly parsed but not yet verified: only to choose the issuer and key."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenTooLargeError("The bearer token is too large.")
    if not _TOKEN_SHAPE.fullmatch(token):
        raise MalformedTokenError("The bearer token is not a compact JWT.")
    header_segment, payload_segment, _ = token.split(".")
    return _json_object(header_segment), _json_object(payload_segment)


def _json_object(segment: str) -> dict[str, Any]:
    try:
        text = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode("utf-8")
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
        # Lone surrogates ("\ud800") parse, but would fail later wherever the text is encoded.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (binascii.Error, ValueError, RecursionError) as exc:  # UnicodeError and JSONDecodeError are ValueErrors
        raise MalformedTokenError("The bearer token is not a well-formed JWT.") from exc
    if not isinstance(value, dict):
        raise MalformedTokenError("The bearer token's header or payload is not a JSON object.")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers disagreeing on which duplicate wins is how claims get smuggled.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _key_type(alg: str) -> str | None:
    """The key type an asymmetric algorithm needs; ``None`` for ``none``, HS* and unknown names."""
    if alg == "EdDSA":
        return "OKP"
    family = _KEY_TYPE_BY_ALG_PREFIX.get(alg[:2])
    return family if family and alg[2:] in ("256", "384", "512", "256K") else None


def _check_header_type(typ: Any, trusted: TrustedIssuer) -> None:
    """RFC 8725 3.11: a JWT of another kind (ID token, logout token, …) is never an access token."""
    if typ is not None and not isinstance(typ, str):
        raise MalformedTokenError("The token's typ header is not a string.")
    media_type = typ.lower() if typ is not None else None
    if trusted.require_at_jwt:
        if media_type not in AT_JWT_TYPES:
            raise WrongTokenTypeError("An access token (typ at+jwt) is required.")
    elif media_type is not None and media_type not in AT_JWT_TYPES | _GENERIC_JWT_TYPES:
        raise WrongTokenTypeError("An access token is required.")


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < MAX_NUMERIC_DATE:
        raise InvalidClaimsError(f"The token's {name} claim is not a valid time.")
    return float(value)


def _validate_claims(claims: dict[str, Any], *, audience: str, now: float) -> None:
    """Registered claims (``iss`` chose the issuer already); each read with its JSON type checked."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise InvalidClaimsError("The token has no subject.")
    exp = _numeric_date(claims, "exp")
    if exp is None:
        raise InvalidClaimsError("The token has no expiry.")
    for name in ("nbf", "iat"):
        moment = _numeric_date(claims, name)
        if moment is not None and moment > now + MAX_CLOCK_SKEW_SECONDS:
            raise InvalidClaimsError(f"The token's {name} claim lies in the future.")
    if exp <= now:  # the skew leeway applies to nbf/iat only
        raise ExpiredTokenError("The token has expired.")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
    if audiences is None or not all(isinstance(item, str) for item in audiences):
        raise InvalidClaimsError("The token's audience claim is malformed.")
    if audience not in audiences:
        raise WrongAudienceError("The token was not issued for this service.")


def _check_access_token(claims: dict[str, Any], trusted: TrustedIssuer) -> None:
    """Refuse ID tokens always, and tokens that break the issuer's own rules."""
    typ = claims.get("typ")
    if any(name in claims for name in _ID_TOKEN_CLAIMS) or (isinstance(typ, str) and typ.casefold() == "id"):
        raise WrongTokenTypeError("An ID token is not an access token.")
    if trusted.typ_claim is not None and typ != trusted.typ_claim:
        raise WrongTokenTypeError("The token's typ claim does not name an access token.")
    if trusted.client_ids and _client_id(claims) not in trusted.client_ids:
        raise ClientNotAllowedError("The token was issued to a client this service does not accept.")
    if not trusted.required_scopes <= _scopes(claims):
        raise MissingScopeError("The token lacks a scope this service requires.")


def _client_id(claims: dict[str, Any]) -> str:
    """RFC 9068's ``client_id``, else OIDC's ``azp`` (Keycloak, Auth0, Entra v2)."""
    for name in ("client_id", "azp"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    scope = claims.get("scope") or claims.get("scp") or ""
    return frozenset(scope.split() if isinstance(scope, str) else _strings(scope))


def _actor_chain(claims: dict[str, Any]) -> tuple[str, ...]:
    chain: list[str] = []
    act = claims.get("act")
    while isinstance(act, dict) and isinstance(act.get("sub"), str):
        chain.append(act["sub"])
        act = act.get("act")
    return tuple(chain)


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))
    return ()


def _principal_from(claims: dict[str, Any], trusted: TrustedIssuer) -> Principal:
    tenant = claims.get(trusted.tenant_claim)
    if not isinstance(tenant, str) or tenant not in trusted.tenants:
        raise TenantNotAllowedError("The token's issuer may not assert this tenant.")
    acr = claims.get("acr")
    auth_time = _numeric_date(claims, "auth_time")
    return Principal(
        issuer=trusted.issuer,
        issuer_key=trusted.key,
        subject=claims["sub"],
        tenant=tenant,
        roles=_strings(claims.get("roles")),
        groups=_strings(claims.get("groups")),
        scopes=_scopes(claims),
        acr=acr if isinstance(acr, str) else None,
        amr=_strings(claims.get("amr")),
        auth_time=int(auth_time) if auth_time is not None else None,
        expires_at=int(claims["exp"]),
        client_id=_client_id(claims),
        actor_chain=_actor_chain(claims),
    )
