"""Every request needs a verified token: the attacks answer 401 with a stable code and a fixed challenge."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc.jwk import RSAKey

from mandate.auth import TokenError
from mandate.runtime.settings import Settings
from tests.utils.threads import bearer
from tests.utils.tokens import claims_of, dev_issuer_key, fresh_claims, sign, unsigned


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _b64_text(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def _sign_raw(header: str, payload: str, key: RSAKey) -> str:
    """An RS256 JWS over exactly these JSON texts, so hostile headers and claims carry a real signature."""
    signing_input = f"{_b64_text(header)}.{_b64_text(payload)}"
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _descriptions(root: type[TokenError] = TokenError) -> dict[str, str]:
    """Every token error's fixed challenge text, by code."""
    found = {root.code: root.description}
    for sub in root.__subclasses__():
        found |= _descriptions(sub)
    return found


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


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("alg_non_ascii", "disallowed_algorithm"),
        ("alg_with_quote", "disallowed_algorithm"),
        ("typ_array", "malformed_token"),
        ("iss_array", "untrusted_issuer"),
        ("exp_overflow", "invalid_claims"),
        ("id_token_nonce", "wrong_token_type"),
        ("duplicate_iss", "malformed_token"),
        ("oversized", "token_too_large"),
    ],
)
def test_threads_with_hostile_token_answer_401_with_fixed_challenge(
    client: httpx.Client, token: Callable[..., str], stack_settings: Settings, case: str, code: str
) -> None:
    """Each case once answered 500 or reflected the token into ``WWW-Authenticate``."""
    key = dev_issuer_key(stack_settings.data_dir)
    claims = fresh_claims(claims_of(token("alice")))
    header: dict[str, Any] = {"alg": "RS256", "typ": "at+jwt", "kid": key.kid}
    payload = json.dumps(claims)
    if case == "alg_non_ascii":
        header["alg"] = "RS256\u00e9\u2028"
    elif case == "alg_with_quote":
        header["alg"] = 'RS256", error_uri="https://evil.example'
    elif case == "typ_array":
        header["typ"] = ["at+jwt"]
    elif case == "iss_array":
        payload = json.dumps({**claims, "iss": [claims["iss"]]})
    elif case == "exp_overflow":
        payload = payload.replace(f'"exp": {claims["exp"]}', '"exp": 1e400')
    elif case == "id_token_nonce":
        payload = json.dumps({**claims, "nonce": "n-0S6_WzA2Mj"})
    elif case == "duplicate_iss":
        payload = payload[:-1] + ', "iss": "https://evil.example"}'
    elif case == "oversized":
        payload = json.dumps({**claims, "padding": "x" * 16_384})
    hostile = _sign_raw(json.dumps(header, ensure_ascii=False), payload, key)
    response = client.post("/threads/search", json={}, headers=bearer(hostile))
    _assert_401(response, code)
    assert set(response.json()) == {"code", "message"}
    challenge = response.headers["WWW-Authenticate"]
    metadata = f"{stack_settings.public_url}/.well-known/oauth-protected-resource"
    assert challenge == (
        f'Bearer resource_metadata="{metadata}", error="invalid_token", error_description="{_descriptions()[code]}"'
    )
    for segment in hostile.split("."):
        assert segment[:16] not in challenge and segment[:16] not in response.text


def test_challenge_ignores_a_hostile_host_header(client: httpx.Client, stack_settings: Settings) -> None:
    response = client.post("/threads/search", json={}, headers={**bearer("not-a-jwt"), "Host": 'evil.example", x="y'})
    _assert_401(response, "malformed_token")
    challenge = response.headers["WWW-Authenticate"]
    assert "evil" not in challenge
    assert f'resource_metadata="{stack_settings.public_url}/.well-known/oauth-protected-resource"' in challenge
