"""TokenVerifier against real HTTP issuers whose JWKS fetches are counted, on a clock the tests move."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pydantic
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from fastapi import FastAPI, Response
from joserfc.jwk import RSAKey

from mandate.auth import IssuerUnavailableError, TokenError, TokenVerifier, TrustedIssuer
from mandate.auth.verifier import JWKS_FETCH_TIMEOUT_SECONDS
from mandate.auth import errors
from mandate.auth.errors import (
    ClientNotAllowedError,
    ExpiredTokenError,
    InvalidClaimsError,
    MissingScopeError,
    TenantNotAllowedError,
    TokenTooLargeError,
    UnknownKeyError,
    WrongTokenTypeError,
)
from mandate.runtime.settings import Settings
from mandate.runtime.services import trusted_issuers
from mandate.runtime.settings import IssuerSettings
from tests.utils.clock import FakeClock
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.tokens import sign

AUDIENCE = "https://mandate.test"
LIVENESS_SECONDS = 10.0
"""Generous bound for "does not wait": far above the timeouts under test, far below a hang."""
ISSUER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
"""Generated once: RSA key generation would dominate these tests' run time."""
ROTATED_KEY = RSAKey.generate_key(2048, parameters={"kid": "k2"})
STRANGER_KEY = RSAKey.generate_key(2048, parameters={"kid": "stranger"})
"""Published by no issuer."""


@dataclass(kw_only=True)
class CountingIssuer:
    """A minimal third-party issuer: discovery + JWKS, with fetch counters, key rotation and a gate.

    While ``gate`` is cleared, JWKS requests are received (``jwks_started``) but not answered, as
    with an issuer that hangs. ``jwks_status`` other than 200 makes the JWKS endpoint fail.
    """

    url: str = ""
    keys: list[RSAKey] = field(default_factory=lambda: [ISSUER_KEY])
    cache_control: str | None = None
    jwks_status: int = 200
    jwks_started: int = 0
    jwks_fetches: int = 0
    """JWKS requests answered."""
    gate: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    def app(self) -> FastAPI:
        api = FastAPI()

        @api.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return {"issuer": self.url, "jwks_uri": f"{self.url}/jwks"}

        @api.get("/jwks")
        async def jwks(response: Response) -> dict[str, Any]:
            self.jwks_started += 1
            while not self.gate.is_set():
                await asyncio.sleep(0.01)
            self.jwks_fetches += 1
            response.status_code = self.jwks_status
            if self.cache_control is not None:
                response.headers["Cache-Control"] = self.cache_control
            return {"keys": [key.as_dict(private=False) for key in self.keys]}

        return api

    def claims(self, **claims: Any) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": self.url, "sub": "u1", "aud": AUDIENCE, "iat": now, "exp": now + 86_400, "tenant": "t1", **claims}

    def token(self, key: RSAKey | None = None, **claims: Any) -> str:
        return sign(self.claims(**claims), key or self.keys[0])


@pytest.fixture()
def issuer() -> Iterator[CountingIssuer]:
    issuer = CountingIssuer()
    with serve_in_thread(issuer.app()) as url:
        issuer.url = url
        try:
            yield issuer
        finally:
            issuer.gate.set()  # let a hung request finish so the server can stop


@pytest.fixture()
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # A long client timeout: only the verifier's own fetch timeout may cut a fetch short.
    async with httpx.AsyncClient(timeout=60) as client:
        yield client


def trusted(issuer: CountingIssuer, **rules: Any) -> TrustedIssuer:
    return TrustedIssuer(**{"issuer": issuer.url, "key": "i1", "tenants": frozenset({"t1"}), **rules})


def _verifier(issuer: CountingIssuer, http: httpx.AsyncClient, *, rules: dict[str, Any] | None = None, **kw: Any) -> TokenVerifier:
    return TokenVerifier(issuers=[trusted(issuer, **(rules or {}))], audience=AUDIENCE, http=http, **kw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_raw(header: str, payload: str, key: RSAKey) -> str:
    """A compact RS256 JWS over exactly these header and payload texts (no library checks them)."""
    signing_input = f"{_b64(header.encode('utf-8', 'surrogatepass'))}.{_b64(payload.encode('utf-8', 'surrogatepass'))}"
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


async def _until(condition: Any) -> None:
    """Yield to the loop until ``condition()`` holds (bounded, so a regression fails instead of hanging)."""
    deadline = time.monotonic() + LIVENESS_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


# --- key fetching --------------------------------------------------------------------------------


async def test_verify_caches_jwks_across_tokens(issuer: CountingIssuer, http: httpx.AsyncClient) -> None:
    verifier = _verifier(issuer, http)
    for _ in range(5):
        principal = await verifier.verify(issuer.token())
    assert principal.subject == "u1" and principal.tenant == "t1"
    assert issuer.jwks_fetches == 1


async def test_verify_refetches_once_for_rotated_key(issuer: CountingIssuer, http: httpx.AsyncClient) -> None:
    verifier = _verifier(issuer, http)
    await verifier.verify(issuer.token())
    issuer.keys.append(ROTATED_KEY)
    assert (await verifier.verify(issuer.token(ROTATED_KEY))).subject == "u1"
    assert issuer.jwks_fetches == 2


async def test_verify_unknown_kid_flood_fetches_at_most_once_per_cooldown(
    issuer: CountingIssuer, http: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    verifier = _verifier(issuer, http, clock=clock, refetch_cooldown=30)
    await verifier.verify(issuer.token())
    flood = [sign(issuer.claims(), STRANGER_KEY, kid=f"random-{i}") for i in range(20)]
    outcomes = await asyncio.gather(*(verifier.verify(t) for t in flood), return_exceptions=True)
    assert all(isinstance(outcome, UnknownKeyError) for outcome in outcomes)
    assert issuer.jwks_fetches == 2  # the flood joined one refetch
    clock.now += 29
    for t in flood:
        with pytest.raises(UnknownKeyError):
            await verifier.verify(t)
    assert issuer.jwks_fetches == 2
    clock.now += 2
    with pytest.raises(UnknownKeyError):
        await verifier.verify(flood[0])
    assert issuer.jwks_fetches == 3


async def test_verify_failed_fetch_is_not_retried_before_cooldown(issuer: CountingIssuer, http: httpx.AsyncClient) -> None:
    clock = FakeClock()
    issuer.jwks_status = 500
    verifier = _verifier(issuer, http, clock=clock, refetch_cooldown=30)
    for _ in range(10):
        with pytest.raises(IssuerUnavailableError):
            await verifier.verify(issuer.token())
    assert issuer.jwks_started == 1
    issuer.jwks_status = 200
    clock.now += 31
    assert (await verifier.verify(issuer.token())).subject == "u1"
    assert issuer.jwks_started == 2


async def test_verify_cached_key_does_not_wait_for_fetch_in_progress(
    issuer: CountingIssuer, http: httpx.AsyncClient
) -> None:
    verifier = _verifier(issuer, http, fetch_timeout=LIVENESS_SECONDS * 3)
    await verifier.verify(issuer.token())
    issuer.gate.clear()
    pending = asyncio.create_task(verifier.verify(issuer.token(STRANGER_KEY)))
    await _until(lambda: issuer.jwks_started == 2)
    principal = await asyncio.wait_for(verifier.verify(issuer.token()), timeout=LIVENESS_SECONDS)
    assert principal.subject == "u1"
    assert not pending.done()  # the refetch is still hanging at the issuer
    issuer.gate.set()
    with pytest.raises(UnknownKeyError):
        await pending


async def test_verify_hanging_issuer_fails_closed_after_fetch_timeout(
    issuer: CountingIssuer, http: httpx.AsyncClient
) -> None:
    issuer.gate.clear()
    verifier = _verifier(issuer, http, fetch_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(IssuerUnavailableError):
        await asyncio.wait_for(verifier.verify(issuer.token()), timeout=LIVENESS_SECONDS)
    assert time.monotonic() - started < LIVENESS_SECONDS
    assert issuer.jwks_started == 1 and issuer.jwks_fetches == 0  # gave up; the issuer never answered
    with pytest.raises(IssuerUnavailableError):  # and within the cooldown, no second try
        await verifier.verify(issuer.token())
    assert issuer.jwks_started == 1


async def test_verify_refreshes_after_half_max_age_and_drops_removed_key(
    issuer: CountingIssuer, http: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    issuer.cache_control = "public, max-age=600"
    verifier = _verifier(issuer, http, clock=clock)
    old = issuer.token()
    await verifier.verify(old)
    issuer.keys = [ROTATED_KEY]  # k1 removed at the issuer
    clock.now += 299
    assert (await verifier.verify(old)).subject == "u1"
    assert issuer.jwks_started == 1
    clock.now += 2
    assert (await verifier.verify(old)).subject == "u1"  # served from the cache; a refresh starts behind it
    await _until(lambda: issuer.jwks_fetches == 2)
    # The issuer counts its answer before the verifier has read it: the removed key goes a moment later.
    deadline = time.monotonic() + LIVENESS_SECONDS
    while True:
        try:
            await verifier.verify(old)
        except UnknownKeyError:
            break
        assert time.monotonic() < deadline, "the removed key was never dropped"
        await asyncio.sleep(0.01)
    assert (await verifier.verify(issuer.token())).subject == "u1"


async def test_verify_drops_key_set_at_end_of_lifetime_without_traffic(
    issuer: CountingIssuer, http: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    issuer.cache_control = "max-age=600"
    verifier = _verifier(issuer, http, clock=clock)
    old = issuer.token()
    await verifier.verify(old)
    issuer.keys = [ROTATED_KEY]
    clock.now += 600
    with pytest.raises(UnknownKeyError):
        await verifier.verify(old)
    assert issuer.jwks_fetches == 2


@pytest.mark.parametrize(
    ("cache_control", "lifetime"),
    [
        ("max-age=1", 60),  # clamped up to the minimum
        ("no-cache", 60),
        ("public, max-age=999999999", 3600),  # clamped down to the maximum
        (None, 300),  # no max-age: the default
        ("max-age=900", 900),
    ],
)
async def test_verify_key_set_lifetime_follows_clamped_max_age(
    issuer: CountingIssuer, http: httpx.AsyncClient, cache_control: str | None, lifetime: int
) -> None:
    clock = FakeClock()
    issuer.cache_control = cache_control
    verifier = _verifier(issuer, http, clock=clock, rules={"jwks_min_lifetime": 60, "jwks_max_lifetime": 3600})
    token = issuer.token()
    await verifier.verify(token)
    clock.now += lifetime / 2 - 1
    await verifier.verify(token)
    assert issuer.jwks_started == 1
    clock.now += lifetime / 2 + 1  # past the end: the request waits for fresh keys
    await verifier.verify(token)
    assert issuer.jwks_fetches == 2


async def test_verify_issuer_down_fails_closed(http: httpx.AsyncClient) -> None:
    dead = TrustedIssuer(issuer="http://127.0.0.1:9", key="dead", tenants=frozenset({"t1"}))
    verifier = TokenVerifier(issuers=[dead], audience=AUDIENCE, http=http)
    token = sign({"iss": dead.issuer, "sub": "u", "aud": AUDIENCE, "exp": 2**31, "tenant": "t1"}, ISSUER_KEY)
    with pytest.raises(IssuerUnavailableError):
        await verifier.verify(token)


# --- claims and time ------------------------------------------------------------------------------


async def test_verify_exp_has_no_leeway_at_fixed_clock(issuer: CountingIssuer, http: httpx.AsyncClient) -> None:
    token = issuer.token(iat=1_000, exp=2_000)
    verifier = _verifier(issuer, http)
    assert (await verifier.verify(token, now=1_999)).expires_at == 2_000
    with pytest.raises(ExpiredTokenError):
        await verifier.verify(token, now=2_000)


async def test_verify_nbf_skew_is_sixty_seconds_at_fixed_clock(issuer: CountingIssuer, http: httpx.AsyncClient) -> None:
    token = issuer.token(iat=1_000, nbf=1_060, exp=5_000)
    verifier = _verifier(issuer, http)
    assert (await verifier.verify(token, now=1_000)).subject == "u1"
    with pytest.raises(InvalidClaimsError):
        await verifier.verify(token, now=999)


async def test_verify_reads_actor_chain_and_scopes(issuer: CountingIssuer, http: httpx.AsyncClient) -> None:
    token = issuer.token(scope="a b", act={"sub": "agent-2", "act": {"sub": "agent-1"}}, acr="urn:mandate:acr:mfa")
    principal = await _verifier(issuer, http).verify(token)
    assert principal.actor_chain == ("agent-2", "agent-1")
    assert principal.scopes == frozenset({"a", "b"})
    assert principal.acr == "urn:mandate:acr:mfa"


# --- malformed tokens ------------------------------------------------------------------------------


def _header(**fields: Any) -> str:
    return json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "k1", **fields})


@pytest.mark.parametrize(
    ("header", "claims", "code"),
    [
        (_header(alg="RS256\u00e9"), None, "disallowed_algorithm"),
        (_header(alg='RS256", error="injected'), None, "disallowed_algorithm"),
        (_header(alg=["RS256"]), None, "disallowed_algorithm"),
        (_header(typ=["at+jwt"]), None, "malformed_token"),
        (_header(kid=7), None, "unknown_key"),
        (_header(crit=["exp"]), None, "malformed_token"),
        ('{"alg": "RS256", "alg": "none", "typ": "at+jwt", "kid": "k1"}', None, "malformed_token"),
        ('{"alg": "RS256", "typ": "at+jwt", "kid": "\\ud800"}', None, "malformed_token"),
        ("[" * 5000 + "]" * 5000, None, "malformed_token"),
        ("null", None, "malformed_token"),
        (None, '{"iss": ["ISSUER"], "sub": "u1"}', "untrusted_issuer"),
        (None, '{"iss": {"a": 1}, "sub": "u1"}', "untrusted_issuer"),
        (None, '{"iss": "ISSUER", "sub": "u1", "aud": "AUD", "exp": NaN, "tenant": "t1"}', "malformed_token"),
        (None, '{"iss": "ISSUER", "sub": "u1", "aud": "AUD", "exp": 1e400, "tenant": "t1"}', "invalid_claims"),
        (None, '{"iss": "ISSUER", "sub": "u1", "aud": "AUD", "exp": "2099", "tenant": "t1"}', "invalid_claims"),
        (None, '{"iss": "ISSUER", "sub": "u1", "aud": "AUD", "exp": true, "tenant": "t1"}', "invalid_claims"),
        (None, '{"iss": "ISSUER", "sub": ["u1"], "aud": "AUD", "exp": 4000000000, "tenant": "t1"}', "invalid_claims"),
        (None, '{"iss": "ISSUER", "sub": "u1", "aud": ["AUD", 5], "exp": 4000000000, "tenant": "t1"}', "invalid_claims"),
        (None, '{"iss": "ISSUER", "sub": "u1", "aud": "AUD", "exp": 4000000000, "tenant": "t1", "auth_time": 1e300}', "invalid_claims"),
        (None, '{"iss": "ISSUER", "iss": "https://evil.example", "sub": "u1"}', "malformed_token"),
        (None, '"just a string"', "malformed_token"),
    ],
)
async def test_verify_malformed_token_is_a_token_error_with_fixed_message(
    issuer: CountingIssuer, http: httpx.AsyncClient, header: str | None, claims: str | None, code: str
) -> None:
    """Each case once gave a 500 (TypeError, OverflowError, UnicodeEncodeError) or echoed the token."""
    valid_claims = json.dumps(issuer.claims())
    payload = (claims or valid_claims).replace("ISSUER", issuer.url).replace("AUD", AUDIENCE)
    token = sign_raw(header or _header(), payload, issuer.keys[0])
    with pytest.raises(TokenError) as raised:
        await _verifier(issuer, http).verify(token)
    assert raised.value.code == code
    assert raised.value.message.isascii() and '"' not in raised.value.message
    assert "RS256" not in raised.value.message and "injected" not in raised.value.message


@pytest.mark.parametrize(
    "token",
    ["", "a", "a.b", "a.b.c.d.e", "a..c", "é.é.é", "a b.c.d", "aGk.aGk.aGk\n", "=.=.=", "x" * 200],
)
async def test_verify_garbage_is_malformed_token(issuer: CountingIssuer, http: httpx.AsyncClient, token: str) -> None:
    with pytest.raises(TokenError) as raised:
        await _verifier(issuer, http).verify(token)
    assert raised.value.code == "malformed_token"
    assert issuer.jwks_started == 0


async def test_verify_oversized_token_is_refused_before_parsing(issuer: CountingIssuer, http: httpx.AsyncClient) -> None:
    padded = issuer.token(padding="x" * 16_384)
    assert len(padded) > 16 * 1024
    with pytest.raises(TokenTooLargeError) as raised:
        await _verifier(issuer, http).verify(padded)
    assert raised.value.code == "token_too_large"
    assert issuer.jwks_started == 0  # never got as far as choosing a key
    assert (await _verifier(issuer, http).verify(issuer.token(padding="x" * 4_000))).subject == "u1"


def _error_classes(root: type[errors.AuthError]) -> list[type[errors.AuthError]]:
    found = [root]
    for sub in root.__subclasses__():
        found += _error_classes(sub)
    return found


@pytest.mark.parametrize("error", [*_error_classes(errors.TokenError), errors.StepUpRequiredError])
def test_token_error_description_is_fixed_header_safe_text(error: type[errors.AuthError]) -> None:
    description = error.description  # type: ignore[attr-defined]
    assert description and all(32 <= ord(ch) < 127 for ch in description)
    assert '"' not in description and "\\" not in description


# --- ID tokens and per-issuer access-token rules ----------------------------------------------------


@pytest.mark.parametrize("marker", [{"nonce": "n-0S6"}, {"at_hash": "77QmUPtjPfzW"}, {"c_hash": "LDkt"}, {"s_hash": "x"}, {"typ": "ID"}])
@pytest.mark.parametrize("rules", [{}, {"require_at_jwt": False, "client_ids": frozenset({"web"})}])
async def test_verify_id_token_is_refused_under_any_rules(
    issuer: CountingIssuer, http: httpx.AsyncClient, marker: dict[str, str], rules: dict[str, Any]
) -> None:
    verifier = _verifier(issuer, http, rules=rules)
    header = {} if rules.get("require_at_jwt", True) else {"typ": "JWT"}
    assert (await verifier.verify(sign(issuer.claims(azp="web"), issuer.keys[0], **header))).client_id == "web"
    with pytest.raises(WrongTokenTypeError):
        await verifier.verify(sign(issuer.claims(azp="web", **marker), issuer.keys[0], **header))


@pytest.mark.parametrize(("typ", "accepted"), [("JWT", True), ("at+jwt", True), (None, True), ("logout+jwt", False), ("id+jwt", False)])
async def test_verify_without_at_jwt_accepts_only_plain_or_access_token_types(
    issuer: CountingIssuer, http: httpx.AsyncClient, typ: str | None, accepted: bool
) -> None:
    verifier = _verifier(issuer, http, rules={"require_at_jwt": False, "client_ids": frozenset({"web"})})
    header: dict[str, Any] = {"alg": "RS256", "kid": "k1"} | ({"typ": typ} if typ else {})
    token = sign_raw(json.dumps(header), json.dumps(issuer.claims(azp="web")), issuer.keys[0])
    if accepted:
        assert (await verifier.verify(token)).subject == "u1"
    else:
        with pytest.raises(WrongTokenTypeError):
            await verifier.verify(token)


@pytest.mark.parametrize(
    ("client", "accepted"),
    [({"azp": "web"}, True), ({"client_id": "cli"}, True), ({"azp": "other"}, False), ({}, False), ({"azp": ["web"]}, False)],
)
async def test_verify_client_allow_list(
    issuer: CountingIssuer, http: httpx.AsyncClient, client: dict[str, Any], accepted: bool
) -> None:
    verifier = _verifier(issuer, http, rules={"client_ids": frozenset({"web", "cli"})})
    token = issuer.token(**client)
    if accepted:
        assert (await verifier.verify(token)).client_id in {"web", "cli"}
    else:
        with pytest.raises(ClientNotAllowedError):
            await verifier.verify(token)


@pytest.mark.parametrize(("typ", "accepted"), [("Bearer", True), ("Refresh", False), ("ID", False), (None, False), (["Bearer"], False)])
async def test_verify_typ_claim_rule_keycloak(
    issuer: CountingIssuer, http: httpx.AsyncClient, typ: Any, accepted: bool
) -> None:
    verifier = _verifier(issuer, http, rules={"require_at_jwt": False, "typ_claim": "Bearer"})
    token = sign(issuer.claims(**({"typ": typ} if typ is not None else {})), issuer.keys[0], typ="JWT")
    if accepted:
        assert (await verifier.verify(token)).subject == "u1"
    else:
        with pytest.raises(WrongTokenTypeError):
            await verifier.verify(token)


@pytest.mark.parametrize(
    ("scopes", "accepted"),
    [({"scope": "openid api.read"}, True), ({"scp": ["api.read"]}, True), ({"scope": "openid"}, False), ({}, False)],
)
async def test_verify_required_scopes(
    issuer: CountingIssuer, http: httpx.AsyncClient, scopes: dict[str, Any], accepted: bool
) -> None:
    verifier = _verifier(issuer, http, rules={"required_scopes": frozenset({"api.read"})})
    token = issuer.token(**scopes)
    if accepted:
        assert "api.read" in (await verifier.verify(token)).scopes
    else:
        with pytest.raises(MissingScopeError):
            await verifier.verify(token)


def test_trusted_issuers_maps_access_token_rules_from_settings() -> None:
    settings = Settings(
        env="test",
        oidc_issuers=[
            IssuerSettings(
                issuer="https://kc.example/realms/acme", id="kc", tenants=["acme"], require_at_jwt=False,
                client_ids=["web"], typ_claim="Bearer", required_scopes=["api"],
                jwks_min_lifetime_seconds=30, jwks_max_lifetime_seconds=600,
            )
        ],
    )
    (mapped,) = trusted_issuers(settings)
    assert mapped.client_ids == frozenset({"web"}) and mapped.typ_claim == "Bearer"
    assert mapped.required_scopes == frozenset({"api"}) and not mapped.require_at_jwt
    assert (mapped.jwks_min_lifetime, mapped.jwks_max_lifetime) == (30, 600)


def test_issuer_settings_without_at_jwt_need_a_rule_that_tells_id_tokens_apart() -> None:
    with pytest.raises(pydantic.ValidationError, match="ID tokens"):
        IssuerSettings(issuer="https://kc.example", id="kc", tenants=["acme"], require_at_jwt=False)
    with pytest.raises(pydantic.ValidationError, match="jwks_min_lifetime"):
        IssuerSettings(issuer="https://a.example", id="a", tenants=["a"], jwks_min_lifetime_seconds=600, jwks_max_lifetime_seconds=60)


# --- issuers and tenants ------------------------------------------------------------------------------


@pytest.fixture()
def second_issuer() -> Iterator[CountingIssuer]:
    issuer = CountingIssuer(keys=[RSAKey.generate_key(2048, parameters={"kid": "k1"})])  # same kid, other key
    with serve_in_thread(issuer.app()) as url:
        issuer.url = url
        yield issuer


async def test_an_issuer_that_starts_listening_a_moment_late_is_waited_for(http: httpx.AsyncClient) -> None:
    """Mandate's own dev issuer starts listening just after the run workers may need it."""
    issuer, port = CountingIssuer(), free_port()
    issuer.url = f"http://127.0.0.1:{port}"
    verifier = _verifier(issuer, http)
    verifying = asyncio.create_task(verifier.verify(issuer.token()))
    await asyncio.sleep(0.05)  # the first connection is refused
    with serve_in_thread(issuer.app(), port=port):
        assert (await verifying).subject == "u1"


async def test_an_issuer_that_never_listens_is_unavailable_after_a_few_quick_tries(http: httpx.AsyncClient) -> None:
    issuer = CountingIssuer(url=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(IssuerUnavailableError):
        await _verifier(issuer, http).verify(issuer.token())
    assert time.monotonic() - started < JWKS_FETCH_TIMEOUT_SECONDS  # refused, not waited out


async def test_verify_same_sub_from_two_issuers_gives_distinct_users(
    issuer: CountingIssuer, second_issuer: CountingIssuer, http: httpx.AsyncClient
) -> None:
    verifier = TokenVerifier(
        issuers=[trusted(issuer, key="a"), trusted(second_issuer, key="b", tenants=frozenset({"t1"}))],
        audience=AUDIENCE,
        http=http,
    )
    first = await verifier.verify(issuer.token(sub="alice"))
    second = await verifier.verify(second_issuer.token(sub="alice"))
    assert (first.issuer_key, second.issuer_key) == ("a", "b")
    assert first.user_id != second.user_id
    assert first.user_id == "user:a|alice" and second.user_id == "user:b|alice"


@pytest.mark.parametrize("tenant", ["t2", "", ["t1"], {"id": "t1"}, 1, None])
async def test_verify_tenant_not_configured_for_issuer_is_refused(
    issuer: CountingIssuer, second_issuer: CountingIssuer, http: httpx.AsyncClient, tenant: Any
) -> None:
    verifier = TokenVerifier(
        issuers=[trusted(issuer), trusted(second_issuer, key="b", tenants=frozenset({"t2"}))],
        audience=AUDIENCE,
        http=http,
    )
    assert (await verifier.verify(second_issuer.token(tenant="t2"))).tenant == "t2"
    claims = issuer.claims(tenant=tenant)
    if tenant is None:
        del claims["tenant"]
    with pytest.raises(TenantNotAllowedError) as raised:
        await verifier.verify(sign(claims, issuer.keys[0]))
    assert raised.value.code == "tenant_not_allowed"
