"""TokenVerifier against a real HTTP issuer whose JWKS fetches are counted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import RSAKey

from mandate.auth import IssuerUnavailableError, TokenVerifier, TrustedIssuer
from mandate.auth.errors import ExpiredTokenError, InvalidClaimsError, UnknownKeyError
from tests.utils.servers import serve_in_thread
from tests.utils.tokens import sign

AUDIENCE = "https://mandate.test"


@dataclass(kw_only=True)
class CountingIssuer:
    """A minimal third-party issuer: discovery + JWKS, with a fetch counter and key rotation."""

    url: str = ""
    keys: list[RSAKey] = field(default_factory=lambda: [RSAKey.generate_key(2048, parameters={"kid": "k1"})])
    jwks_fetches: int = 0

    def app(self) -> FastAPI:
        api = FastAPI()

        @api.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return {"issuer": self.url, "jwks_uri": f"{self.url}/jwks"}

        @api.get("/jwks")
        def jwks() -> dict[str, Any]:
            self.jwks_fetches += 1
            return {"keys": [key.as_dict(private=False) for key in self.keys]}

        return api

    def token(self, key: RSAKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "sub": "u1", "aud": AUDIENCE, "iat": now, "exp": now + 300, "tenant": "t1", **claims}
        return sign(body, key or self.keys[0])


@pytest.fixture()
def issuer() -> Iterator[CountingIssuer]:
    issuer = CountingIssuer()
    with serve_in_thread(issuer.app()) as url:
        issuer.url = url
        yield issuer


def _verifier(issuer: CountingIssuer, http: httpx.AsyncClient, **kw: Any) -> TokenVerifier:
    return TokenVerifier(issuers=[TrustedIssuer(issuer=issuer.url)], audience=AUDIENCE, http=http, **kw)


async def test_verify_caches_jwks_across_tokens(issuer: CountingIssuer) -> None:
    async with httpx.AsyncClient() as http:
        verifier = _verifier(issuer, http)
        for _ in range(5):
            principal = await verifier.verify(issuer.token())
        assert principal.subject == "u1" and principal.tenant == "t1"
    assert issuer.jwks_fetches == 1


async def test_verify_refetches_once_for_rotated_key(issuer: CountingIssuer) -> None:
    async with httpx.AsyncClient() as http:
        verifier = _verifier(issuer, http)
        await verifier.verify(issuer.token())
        rotated = RSAKey.generate_key(2048, parameters={"kid": "k2"})
        issuer.keys.append(rotated)
        assert (await verifier.verify(issuer.token(rotated))).subject == "u1"
    assert issuer.jwks_fetches == 2


async def test_verify_unknown_kid_flood_refetches_once_per_cooldown(issuer: CountingIssuer) -> None:
    clock = [1_000.0]
    async with httpx.AsyncClient() as http:
        verifier = _verifier(issuer, http, clock=lambda: clock[0], refetch_cooldown=60)
        await verifier.verify(issuer.token(), now=time.time())
        strangers = [RSAKey.generate_key(2048, parameters={"kid": f"x{i}"}) for i in range(3)]
        for stranger in strangers:
            with pytest.raises(UnknownKeyError):
                await verifier.verify(issuer.token(stranger))
        assert issuer.jwks_fetches == 2  # the first unknown kid refetched; the rest hit the cooldown
        clock[0] += 61
        with pytest.raises(UnknownKeyError):
            await verifier.verify(issuer.token(strangers[0]))
    assert issuer.jwks_fetches == 3


async def test_verify_issuer_down_fails_closed() -> None:
    async with httpx.AsyncClient() as http:
        verifier = TokenVerifier(
            issuers=[TrustedIssuer(issuer="http://127.0.0.1:9")], audience=AUDIENCE, http=http
        )
        token = sign({"iss": "http://127.0.0.1:9", "sub": "u", "aud": AUDIENCE, "exp": 2**31}, RSAKey.generate_key(2048, parameters={"kid": "k"}))
        with pytest.raises(IssuerUnavailableError):
            await verifier.verify(token)


async def test_verify_exp_has_no_leeway_at_fixed_clock(issuer: CountingIssuer) -> None:
    token = issuer.token(iat=1_000, exp=2_000)
    async with httpx.AsyncClient() as http:
        verifier = _verifier(issuer, http)
        assert (await verifier.verify(token, now=1_999)).expires_at == 2_000
        with pytest.raises(ExpiredTokenError):
            await verifier.verify(token, now=2_000)


async def test_verify_nbf_skew_is_sixty_seconds_at_fixed_clock(issuer: CountingIssuer) -> None:
    token = issuer.token(iat=1_000, nbf=1_060, exp=5_000)
    async with httpx.AsyncClient() as http:
        verifier = _verifier(issuer, http)
        assert (await verifier.verify(token, now=1_000)).subject == "u1"
        with pytest.raises(InvalidClaimsError):
            await verifier.verify(token, now=999)


async def test_verify_reads_actor_chain_and_scopes(issuer: CountingIssuer) -> None:
    token = issuer.token(scope="a b", act={"sub": "agent-2", "act": {"sub": "agent-1"}}, acr="urn:mandate:acr:mfa")
    async with httpx.AsyncClient() as http:
        principal = await _verifier(issuer, http).verify(token)
    assert principal.actor_chain == ("agent-2", "agent-1")
    assert principal.scopes == frozenset({"a", "b"})
    assert principal.acr == "urn:mandate:acr:mfa"
