"""Fuzzing TokenVerifier.verify: whatever a caller sends, only a TokenError (or IssuerUnavailableError) escapes.

Headers and claims of every JSON type (arrays, numbers, nested objects, unicode, quotes, huge values)
are signed with the issuer's real key, so they get past the signature and reach claim validation
and the building of the principal; raw garbage exercises the parser.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mandate.auth import IssuerUnavailableError, Principal, TokenError, TokenVerifier
from tests.auth.test_verifier import AUDIENCE, CountingIssuer, sign_raw, trusted
from tests.utils.servers import serve_in_thread

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    database=None,  # nothing written into the working tree; a failure prints its reproduction
    suppress_health_check=[HealthCheck.too_slow],
)
TRICKY_STRINGS = [
    '"', "\\", '", error="injected', "\r\n", "\x00", "é", "\u202e", "\U0001f600", "RS256", "at+jwt",
    "ID", "Bearer", "none", "HS256", "k1", "t1", "web", "x" * 20_000,
]
HEADER_NAMES = ["alg", "typ", "kid", "crit", "jku", "jwk", "x5c", "x5u", "cty", "b64", "enc", "zip"]
CLAIM_NAMES = [
    "iss", "sub", "aud", "exp", "nbf", "iat", "tenant", "scope", "scp", "roles", "groups", "amr",
    "acr", "auth_time", "act", "client_id", "azp", "typ", "nonce", "at_hash",
]

strings = st.text(max_size=40) | st.sampled_from(TRICKY_STRINGS)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | strings
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4),
    max_leaves=10,
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def fuzz_issuer() -> Iterator[CountingIssuer]:
    issuer = CountingIssuer()
    with serve_in_thread(issuer.app()) as url:
        issuer.url = url
        yield issuer


@pytest.fixture(scope="module")
async def verifier(fuzz_issuer: CountingIssuer) -> AsyncIterator[TokenVerifier]:
    async with httpx.AsyncClient(timeout=10) as http:
        verifier = TokenVerifier(
            issuers=[trusted(fuzz_issuer, client_ids=frozenset({"web"}))], audience=AUDIENCE, http=http
        )
        # Keys fetched once up front: the examples then exercise verification, not the network.
        await verifier.verify(fuzz_issuer.token(azp="web"))
        yield verifier


async def _verify_only_token_errors(verifier: TokenVerifier, token: str) -> Principal | None:
    """Verify ``token``; anything but a principal or one of our typed errors fails the test."""
    try:
        principal = await verifier.verify(token)
    except (TokenError, IssuerUnavailableError) as exc:
        # Messages are fixed texts: nothing of the token, nothing a header could not carry.
        assert exc.message.isascii() and exc.message.isprintable() and '"' not in exc.message
        assert "injected" not in exc.message
        return None
    assert isinstance(principal.subject, str) and principal.subject
    assert principal.tenant == "t1" and principal.client_id == "web"
    assert isinstance(principal.expires_at, int)
    assert isinstance(principal.user_id, str)
    return principal


@FUZZ
@given(
    garbage=st.text(max_size=300)
    | st.binary(max_size=300).map(_b64)
    | st.lists(st.text(alphabet="AZaz09-_=+/.é \"", max_size=60), min_size=1, max_size=6).map(".".join)
    | st.lists(json_values.map(lambda v: _b64(json.dumps(v).encode())), min_size=2, max_size=4).map(".".join)
)
async def test_verify_fuzzed_garbage_raises_only_token_errors(verifier: TokenVerifier, garbage: str) -> None:
    assert await _verify_only_token_errors(verifier, garbage) is None


@FUZZ
@given(header=st.dictionaries(st.sampled_from(HEADER_NAMES) | strings, json_values, max_size=5))
async def test_verify_fuzzed_signed_header_raises_only_token_errors(
    verifier: TokenVerifier, fuzz_issuer: CountingIssuer, header: dict[str, Any]
) -> None:
    token = sign_raw(
        json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "k1", **header}),
        json.dumps(fuzz_issuer.claims(azp="web")),
        fuzz_issuer.keys[0],
    )
    await _verify_only_token_errors(verifier, token)


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(CLAIM_NAMES) | strings, json_values, min_size=1, max_size=6))
async def test_verify_fuzzed_signed_claims_raise_only_token_errors(
    verifier: TokenVerifier, fuzz_issuer: CountingIssuer, changes: dict[str, Any]
) -> None:
    claims = {**fuzz_issuer.claims(azp="web"), **changes}
    token = sign_raw(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "k1"}), json.dumps(claims), fuzz_issuer.keys[0])
    principal = await _verify_only_token_errors(verifier, token)
    if principal is not None:  # accepted only as what the claims say, never a coerced value
        assert principal.subject == claims["sub"] and principal.tenant == claims["tenant"]


@FUZZ
@given(payload=st.text(max_size=200) | json_values.map(json.dumps))
async def test_verify_fuzzed_signed_raw_payload_raises_only_token_errors(
    verifier: TokenVerifier, fuzz_issuer: CountingIssuer, payload: str
) -> None:
    token = sign_raw(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "k1"}), payload, fuzz_issuer.keys[0])
    assert await _verify_only_token_errors(verifier, token) is None
