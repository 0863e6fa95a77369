"""Every request needs a verified token: the attacks answer 401 with a stable code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from mandate.service import Settings
from tests.utils.threads import bearer
from tests.utils.tokens import claims_of, dev_issuer_key, fresh_claims, sign, unsigned


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _assert_401(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == code
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert "Traceback" not in response.text


def test_threads_without_token_answer_missing_token(client: httpx.Client) -> None:
    response = client.post("/threads/search", json={})
    _assert_401(response, "missing_token")
    assert "resource_metadata=" in response.headers["WWW-Authenticate"]


def test_threads_with_garbage_token_answer_malformed_token(client: httpx.Client) -> None:
    response = client.post("/threads/search", json={}, headers=bearer("not-a-jwt"))
    _assert_401(response, "malformed_token")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_threads_with_tampered_signature_answer_invalid_signature(
    client: httpx.Client, token: Callable[..., str]
) -> None:
    header, payload, signature = token("alice").split(".")
    tampered = f"{header}.{payload}.{signature[:-6]}AAAAAA"
    _assert_401(client.post("/threads/search", json={}, headers=bearer(tampered)), "invalid_signature")


def test_threads_with_claims_swapped_under_real_signature_answer_invalid_signature(
    client: httpx.Client, token: Callable[..., str]
) -> None:
    alice, bob = token("alice").split("."), token("bob").split(".")
    spliced = f"{alice[0]}.{bob[1]}.{alice[2]}"
    _assert_401(client.post("/threads/search", json={}, headers=bearer(spliced)), "invalid_signature")


def test_threads_with_expired_token_answer_token_expired(
    client: httpx.Client, token: Callable[..., str], stack_settings: Settings
) -> None:
    claims = fresh_claims(claims_of(token("alice")), iat=1_700_000_000, exp=1_700_000_600)
    expired = sign(claims, dev_issuer_key(stack_settings.data_dir))
    _assert_401(client.post("/threads/search", json={}, headers=bearer(expired)), "token_expired")


def test_threads_with_token_for_other_audience_answer_wrong_audience(
    client: httpx.Client, token: Callable[..., str], stack_settings: Settings
) -> None:
    claims = fresh_claims(claims_of(token("alice")), aud=["https://another-api.example"])
    forged = sign(claims, dev_issuer_key(stack_settings.data_dir))
    _assert_401(client.post("/threads/search", json={}, headers=bearer(forged)), "wrong_audience")


def test_threads_with_alg_none_answer_disallowed_algorithm(client: httpx.Client, token: Callable[..., str]) -> None:
    forged = unsigned(fresh_claims(claims_of(token("alice"))))
    _assert_401(client.post("/threads/search", json={}, headers=bearer(forged)), "disallowed_algorithm")


def test_threads_with_hs256_keyed_by_public_key_answer_disallowed_algorithm(
    client: httpx.Client, token: Callable[..., str], stack_settings: Settings
) -> None:
    """The key-confusion attack: HMAC "signed" with the issuer's public key."""
    public_pem = dev_issuer_key(stack_settings.data_dir).as_pem(private=False)
    header, claims = {"alg": "HS256", "typ": "at+jwt"}, fresh_claims(claims_of(token("alice")))
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    _assert_401(client.post("/threads/search", json={}, headers=bearer(forged)), "disallowed_algorithm")


def test_threads_with_untrusted_issuer_answer_untrusted_issuer(client: httpx.Client, token: Callable[..., str]) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "stranger"})
    claims = fresh_claims(claims_of(token("alice")), iss="https://evil.example")
    _assert_401(client.post("/threads/search", json={}, headers=bearer(sign(claims, stranger))), "untrusted_issuer")


def test_threads_with_unknown_key_id_answer_unknown_key(client: httpx.Client, token: Callable[..., str]) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "not-published"})
    forged = sign(fresh_claims(claims_of(token("alice"))), stranger)
    _assert_401(client.post("/threads/search", json={}, headers=bearer(forged)), "unknown_key")


def test_threads_with_id_token_type_answer_wrong_token_type(
    client: httpx.Client, token: Callable[..., str], stack_settings: Settings
) -> None:
    forged = sign(fresh_claims(claims_of(token("alice"))), dev_issuer_key(stack_settings.data_dir), typ="JWT")
    _assert_401(client.post("/threads/search", json={}, headers=bearer(forged)), "wrong_token_type")


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_threads_with_time_claim_beyond_skew_answer_invalid_claims(
    client: httpx.Client, token: Callable[..., str], stack_settings: Settings, claim: str
) -> None:
    claims = fresh_claims(claims_of(token("alice")))
    claims[claim] = claims["iat"] + 3600
    claims["exp"] = claims["iat"] + 7200
    forged = sign(claims, dev_issuer_key(stack_settings.data_dir))
    _assert_401(client.post("/threads/search", json={}, headers=bearer(forged)), "invalid_claims")


def test_threads_with_token_without_exp_answer_invalid_claims(
    client: httpx.Client, token: Callable[..., str], stack_settings: Settings
) -> None:
    claims = fresh_claims(claims_of(token("alice")))
    del claims["exp"]
    forged = sign(claims, dev_issuer_key(stack_settings.data_dir))
    _assert_401(client.post("/threads/search", json={}, headers=bearer(forged)), "invalid_claims")


def test_threads_with_valid_token_answer_200(client: httpx.Client, token: Callable[..., str]) -> None:
    response = client.post("/threads/search", json={}, headers=bearer(token("alice")))
    assert response.status_code == 200, response.text
    assert isinstance(response.json(), list)


def test_protected_resource_metadata_names_the_dev_issuer(client: httpx.Client, stack_settings: Settings) -> None:
    body = client.get("/.well-known/oauth-protected-resource").json()
    assert body["resource"] == stack_settings.audience
    assert body["authorization_servers"] == [stack_settings.dev_issuer_url]
