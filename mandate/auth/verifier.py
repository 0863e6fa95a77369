"""Bearer token verification: a JWT from a trusted issuer becomes a :class:`Principal`.

Keys come only from each issuer's JWKS (found by OIDC discovery), cached, refetched once
when an unknown ``kid`` appears and then not again until a cooldown passes, so a flood of
tokens with random key ids cannot make us hammer the issuer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import BadSignatureError, ClaimError, ExpiredTokenError as JoseExpired, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from mandate.auth.errors import (
    DisallowedAlgorithmError,
    ExpiredTokenError,
    InvalidClaimsError,
    InvalidSignatureError,
    IssuerUnavailableError,
    MalformedTokenError,
    UnknownKeyError,
    UntrustedIssuerError,
    WrongAudienceError,
    WrongTokenTypeError,
)
from mandate.auth.principal import Principal

__all__ = ["TokenVerifier", "TrustedIssuer"]

MAX_CLOCK_SKEW_SECONDS = 60
"""Tolerance for ``nbf`` and ``iat`` in the future; ``exp`` gets none."""
JWKS_REFETCH_COOLDOWN_SECONDS = 60.0
AT_JWT_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_SYMMETRIC_PREFIX = "HS"


@dataclass(frozen=True, kw_only=True, slots=True)
class TrustedIssuer:
    """An issuer on the allow-list, with the algorithms pinned for it."""

    issuer: str
    """Exact ``iss`` value."""
    algorithms: tuple[str, ...] = ("RS256",)
    """Asymmetric algorithms accepted from this issuer; ``none`` and HS* are always refused."""
    require_at_jwt: bool = True
    """Enforce ``typ: at+jwt`` (RFC 9068) for issuers that emit it."""
    tenant_claim: str = "tenant"
    """Claim that carries the tenant id."""


@dataclass(kw_only=True, slots=True)
class _KeyCache:
    keys: KeySet | None = None
    refetched_at: float = float("-inf")
    """When an unknown ``kid`` last caused a refetch; the next waits for the cooldown."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


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
    ) -> None:
        self._issuers = {trusted.issuer: trusted for trusted in issuers}
        self._audience = audience
        self._http = http
        self._clock = clock
        self._cooldown = refetch_cooldown
        self._caches = {name: _KeyCache() for name in self._issuers}

    @property
    def audience(self) -> str:
        """The audience every accepted token must name."""
        return self._audience

    async def verify(self, token: str, *, now: float | None = None) -> Principal:
        """Verify ``token`` and build the principal it speaks for.

        Args:
            token: The compact JWT from the ``Authorization: Bearer`` header.
            now: The time to validate against (tests fix the clock); defaults to the clock.

        Returns:
            The verified principal.

        Raises:
            TokenError: A subclass naming exactly what is wrong with the token.
            IssuerUnavailableError: The issuer's JWKS could not be fetched (fail closed).
        """
        now = self._clock() if now is None else now
        header, unverified = _peek(token)
        trusted = self._issuers.get(unverified.get("iss"))  # type: ignore[arg-type]
        if trusted is None:
            raise UntrustedIssuerError("The token's issuer is not trusted by this service.")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in trusted.algorithms or alg.upper().startswith(_SYMMETRIC_PREFIX):
            raise DisallowedAlgorithmError(f"Algorithm {alg!r} is not accepted for this issuer.")
        if trusted.require_at_jwt and header.get("typ") not in AT_JWT_TYPES:
            raise WrongTokenTypeError("An access token (typ at+jwt) is required.")
        key = await self._key_for(trusted, header.get("kid"), now)
        try:
            verified = jwt.decode(token, key, algorithms=[alg])
        except BadSignatureError as exc:
            raise InvalidSignatureError("The token's signature is invalid.") from exc
        except JoseError as exc:
            raise MalformedTokenError("The token could not be decoded.") from exc
        claims = verified.claims
        _validate_claims(claims, issuer=trusted.issuer, audience=self._audience, now=now)
        return _principal_from(claims, trusted)

    async def _key_for(self, trusted: TrustedIssuer, kid: Any, now: float) -> Any:
        cache = self._caches[trusted.issuer]
        async with cache.lock:
            if cache.keys is None:
                cache.keys = await self._fetch_jwks(trusted.issuer)
            elif _find(cache.keys, kid) is None and now - cache.refetched_at >= self._cooldown:
                cache.keys = await self._fetch_jwks(trusted.issuer)
                cache.refetched_at = now
            key = _find(cache.keys, kid)
        if key is None:
            raise UnknownKeyError("The token's signing key is not published by its issuer.")
        return key

    async def _fetch_jwks(self, issuer: str) -> KeySet:
        try:
            discovery = await self._http.get(f"{issuer}/.well-known/openid-configuration")
            discovery.raise_for_status()
            jwks = await self._http.get(discovery.json()["jwks_uri"])
            jwks.raise_for_status()
            return KeySet.import_key_set(jwks.json())
        except (httpx.HTTPError, KeyError, ValueError, JoseError) as exc:
            raise IssuerUnavailableError("The token issuer's keys could not be fetched.") from exc


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims before verification: only to choose the issuer and key."""
    try:
        compact = extract_compact(token.encode("ascii"))
        payload = json.loads(compact.payload)
    except (JoseError, ValueError, UnicodeError) as exc:
        raise MalformedTokenError("The bearer token is not a well-formed JWT.") from exc
    if not isinstance(payload, dict):
        raise MalformedTokenError("The bearer token's payload is not a JSON object.")
    return dict(compact.headers()), payload


def _find(keys: KeySet, kid: Any) -> Any:
    if not isinstance(kid, str):
        return None
    return next((key for key in keys.keys if key.kid == kid), None)


def _validate_claims(claims: dict[str, Any], *, issuer: str, audience: str, now: float) -> None:
    registry = jwt.JWTClaimsRegistry(
        now=int(now),
        leeway=MAX_CLOCK_SKEW_SECONDS,
        iss={"essential": True, "value": issuer},
        sub={"essential": True},
        exp={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseExpired as exc:
        raise ExpiredTokenError("The token has expired.") from exc
    except ClaimError as exc:
        raise InvalidClaimsError(f"The token's claims are invalid ({exc.description}).") from exc
    if claims["exp"] <= now:  # the skew leeway applies to nbf/iat only
        raise ExpiredTokenError("The token has expired.")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in audiences:
        raise WrongAudienceError("The token was not issued for this service.")


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
    scope = claims.get("scope") or claims.get("scp") or ""
    auth_time = claims.get("auth_time")
    return Principal(
        issuer=trusted.issuer,
        subject=claims["sub"],
        tenant=str(claims.get(trusted.tenant_claim) or ""),
        roles=_strings(claims.get("roles")),
        groups=_strings(claims.get("groups")),
        scopes=frozenset(scope.split() if isinstance(scope, str) else _strings(scope)),
        acr=claims.get("acr") if isinstance(claims.get("acr"), str) else None,
        amr=_strings(claims.get("amr")),
        auth_time=int(auth_time) if isinstance(auth_time, (int, float)) else None,
        expires_at=int(claims["exp"]),
        client_id=str(claims.get("client_id") or claims.get("azp") or ""),
        actor_chain=_actor_chain(claims),
    )
