"""The dev issuer over real HTTP: discovery, JWKS and the password, client_credentials and exchange grants."""

from __future__ import annotations

import base64
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from mandate.auth.dev_issuer import (
    DEMO_PASSWORD,
    DEMO_USERS,
    DEV_OTP,
    TOKEN_EXCHANGE_GRANT,
    DevClient,
    create_dev_issuer_app,
)
from mandate.auth.errors import DevIssuerDisabledError
from tests.utils.servers import free_port, serve_in_thread

AUDIENCE = "mandate-api"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
CLI = DevClient(
    client_id="mandate-cli",
    secret=None,
    grant_types=("password",),
    scopes=("mandate", "documents:read", "tickets:create", "payments:send"),
)
EXECUTOR = DevClient(
    client_id="agent-executor",
    secret="executor-secret",
    grant_types=("client_credentials", TOKEN_EXCHANGE_GRANT),
    scopes=("documents:read", "tickets:create", "payments:send"),
    exchange_audiences=("tickets-api", "payments-api"),
)
TICKETER = DevClient(
    client_id="agent-ticketer",
    secret="ticketer-secret",
    grant_types=(TOKEN_EXCHANGE_GRANT,),
    scopes=("tickets:create",),
    exchange_audiences=("tickets-api",),
)
NOTES_MCP = "https://notes.example.com/mcp"
OTHER_MCP = "https://calendar.example.com/mcp"
ASSISTANT = DevClient(
    client_id="agent-assistant",
    secret="assistant-secret",
    grant_types=(TOKEN_EXCHANGE_GRANT,),
    scopes=("tickets:create",),
    exchange_audiences=(NOTES_MCP, OTHER_MCP, "tickets-api"),
)
"""An agent that may act for two MCP servers (resources) and one API named by a logical audience."""
CLIENTS = (CLI, EXECUTOR, TICKETER, ASSISTANT)


def _build_app(*, issuer_url: str, key_path: Path) -> FastAPI:
    """The dev issuer mounted at ``/dev-idp`` of a parent app, as the service mounts it."""
    parent = FastAPI()
    parent.mount(
        "/dev-idp",
        create_dev_issuer_app(
            env="test", issuer_url=issuer_url, audience=AUDIENCE, key_path=key_path, users=DEMO_USERS, clients=CLIENTS
        ),
    )
    return parent


@pytest.fixture(scope="module")
def key_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dev-issuer") / "keys" / "signing.jwk.json"


@pytest.fixture(scope="module")
def idp(key_path: Path) -> Iterator[httpx.Client]:
    """An HTTP client whose base URL is the running issuer (``http://127.0.0.1:<port>/dev-idp``)."""
    port = free_port()
    issuer_url = f"http://127.0.0.1:{port}/dev-idp"
    with serve_in_thread(_build_app(issuer_url=issuer_url, key_path=key_path), port=port):
        with httpx.Client(base_url=issuer_url) as client:
            yield client


def _issuer(idp: httpx.Client) -> str:
    return str(idp.base_url).rstrip("/")


def _jwks(idp: httpx.Client) -> KeySet:
    return KeySet.import_key_set(idp.get("/jwks").json())


def _verify(idp: httpx.Client, token: str) -> jwt.Token:
    """Verify ``token`` against the JWKS fetched over HTTP (the header ``kid`` selects the key)."""
    verified = jwt.decode(token, _jwks(idp), algorithms=["RS256"])
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": _issuer(idp)}, exp={"essential": True}).validate(
        verified.claims
    )
    return verified


def _login(idp: httpx.Client, username: str = "alice", **form: str) -> httpx.Response:
    data = {"grant_type": "password", "client_id": CLI.client_id, "username": username, "password": DEMO_PASSWORD}
    return idp.post("/token", data={**data, **form})


def _user_token(idp: httpx.Client, **form: str) -> str:
    response = _login(idp, **form)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _exchange(
    idp: httpx.Client, subject_token: str, *, client: DevClient = EXECUTOR, **form: str | list[str] | None
) -> httpx.Response:
    data = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": "tickets-api",
        "scope": "tickets:create",
    }
    auth = (client.client_id, client.secret) if client.secret is not None else None
    extra = {} if auth else {"client_id": client.client_id}
    sent = {k: v for k, v in {**data, **extra, **form}.items() if v is not None}  # None: leave the field out
    return idp.post("/token", data=sent, auth=auth)


def _assert_oauth_error(response: httpx.Response, error: str, *, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert "error_description" in response.json()


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"])
def test_discovery_document_advertises_endpoints_and_capabilities(idp: httpx.Client, path: str) -> None:
    response = idp.get(path)

    assert response.status_code == 200
    metadata = response.json()
    issuer = _issuer(idp)
    assert issuer.endswith("/dev-idp")
    assert metadata["issuer"] == issuer
    assert metadata["token_endpoint"] == f"{issuer}/token"
    assert metadata["jwks_uri"] == f"{issuer}/jwks"
    assert set(metadata["grant_types_supported"]) == {"password", "client_credentials", TOKEN_EXCHANGE_GRANT}
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",
    }
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"mandate", "tickets:create", "payments:send"} <= set(metadata["scopes_supported"])
    assert set(metadata["acr_values_supported"]) == {"urn:mandate:acr:pwd", "urn:mandate:acr:mfa"}


def test_jwks_publishes_public_key_only(idp: httpx.Client) -> None:
    (key,) = idp.get("/jwks").json()["keys"]

    assert key["kty"] == "RSA"
    assert {"n", "e", "kid"} <= set(key)
    assert not {"d", "p", "q", "dp", "dq", "qi", "oth"} & set(key)
    assert key["kid"] == RSAKey.import_key(key).thumbprint()


def test_password_grant_issues_at_jwt_with_user_claims(idp: httpx.Client) -> None:
    before = int(time.time())
    response = _login(idp, "bob")

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    verified = _verify(idp, body["access_token"])
    assert verified.header["typ"] == "at+jwt"
    assert verified.header["kid"] == idp.get("/jwks").json()["keys"][0]["kid"]
    claims = verified.claims
    assert {"iss", "sub", "aud", "exp", "iat", "jti", "scope", "client_id", "tenant", "groups", "roles"} <= set(claims)
    assert claims["sub"] == "bob"
    assert claims["aud"] == [AUDIENCE]
    assert claims["client_id"] == CLI.client_id
    assert claims["scope"].split() == list(CLI.scopes)
    assert claims["tenant"] == "acme"
    assert claims["groups"] == ["management"]
    assert claims["roles"] == ["employee", "manager", "approver"]
    assert claims["acr"] == "urn:mandate:acr:pwd"
    assert claims["amr"] == ["pwd"]
    assert before <= claims["auth_time"] <= claims["iat"]
    assert claims["exp"] - claims["iat"] == 900


def test_password_grant_narrows_to_requested_scope(idp: httpx.Client) -> None:
    claims = _verify(idp, _user_token(idp, scope="documents:read")).claims

    assert claims["scope"] == "documents:read"


def test_password_grant_rejects_wrong_password(idp: httpx.Client) -> None:
    _assert_oauth_error(_login(idp, password="not-demo"), "invalid_grant")


def test_password_grant_rejects_unknown_user(idp: httpx.Client) -> None:
    _assert_oauth_error(_login(idp, "mallory"), "invalid_grant")


def test_password_grant_with_dev_otp_marks_mfa(idp: httpx.Client) -> None:
    claims = _verify(idp, _user_token(idp, otp=DEV_OTP)).claims

    assert claims["acr"] == "urn:mandate:acr:mfa"
    assert claims["amr"] == ["pwd", "otp"]


def test_password_grant_rejects_wrong_otp(idp: httpx.Client) -> None:
    _assert_oauth_error(_login(idp, otp="123456"), "invalid_grant")


def test_password_grant_rejects_scope_outside_client(idp: httpx.Client) -> None:
    _assert_oauth_error(_login(idp, scope="documents:read admin"), "invalid_scope")


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_issues_client_token_with_secret(idp: httpx.Client, method: str) -> None:
    data = {"grant_type": "client_credentials", "scope": "tickets:create"}
    if method == "client_secret_basic":
        response = idp.post("/token", data=data, auth=(EXECUTOR.client_id, "executor-secret"))
    else:
        response = idp.post("/token", data={**data, "client_id": EXECUTOR.client_id, "client_secret": "executor-secret"})

    assert response.status_code == 200, response.text
    verified = _verify(idp, response.json()["access_token"])
    assert verified.header["typ"] == "at+jwt"
    assert verified.claims["sub"] == EXECUTOR.client_id
    assert verified.claims["client_id"] == EXECUTOR.client_id
    assert verified.claims["aud"] == [AUDIENCE]
    assert verified.claims["scope"] == "tickets:create"
    assert "tenant" not in verified.claims


def test_client_credentials_rejects_wrong_secret(idp: httpx.Client) -> None:
    response = idp.post("/token", data={"grant_type": "client_credentials"}, auth=(EXECUTOR.client_id, "wrong"))

    _assert_oauth_error(response, "invalid_client", status=401)


def test_client_credentials_refuses_public_client(idp: httpx.Client) -> None:
    response = idp.post("/token", data={"grant_type": "client_credentials", "client_id": CLI.client_id})

    _assert_oauth_error(response, "invalid_client", status=401)


def test_token_exchange_issues_delegated_token_for_user_and_agent(idp: httpx.Client) -> None:
    user_token = _user_token(idp, otp=DEV_OTP)
    user_claims = _verify(idp, user_token).claims

    response = _exchange(idp, user_token)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "tickets:create"
    assert 0 < body["expires_in"] <= 300
    verified = _verify(idp, body["access_token"])
    assert verified.header["typ"] == "at+jwt"
    claims = verified.claims
    assert claims["sub"] == "alice"
    assert claims["act"] == {"sub": EXECUTOR.client_id}
    assert claims["aud"] == "tickets-api"
    assert claims["scope"] == "tickets:create"
    assert claims["client_id"] == EXECUTOR.client_id
    assert claims["exp"] - claims["iat"] <= 300
    for copied in ("tenant", "groups", "roles", "acr", "amr", "auth_time"):
        assert claims[copied] == user_claims[copied]


def test_token_exchange_nests_act_when_subject_already_delegated(idp: httpx.Client) -> None:
    delegated = _exchange(idp, _user_token(idp)).json()["access_token"]

    response = _exchange(idp, delegated, client=TICKETER)

    assert response.status_code == 200, response.text
    claims = _verify(idp, response.json()["access_token"]).claims
    assert claims["sub"] == "alice"
    assert claims["act"] == {"sub": TICKETER.client_id, "act": {"sub": EXECUTOR.client_id}}


def test_token_exchange_caps_life_at_subject_remaining_life(idp: httpx.Client, key_path: Path) -> None:
    now = int(time.time())
    claims = {**_verify(idp, _user_token(idp)).claims, "iat": now, "exp": now + 60}
    signing_key = RSAKey.import_key(json.loads(key_path.read_text()))
    short_lived = jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": signing_key.thumbprint()}, claims, signing_key)

    response = _exchange(idp, short_lived)

    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] <= 60
    assert _verify(idp, response.json()["access_token"]).claims["exp"] <= now + 60


def test_token_exchange_accepts_actor_token_of_the_client(idp: httpx.Client) -> None:
    actor_token = idp.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(EXECUTOR.client_id, "executor-secret")
    ).json()["access_token"]

    response = _exchange(idp, _user_token(idp), actor_token=actor_token, actor_token_type=ACCESS_TOKEN_TYPE)

    assert response.status_code == 200, response.text
    assert _verify(idp, response.json()["access_token"]).claims["act"] == {"sub": EXECUTOR.client_id}


def test_token_exchange_rejects_actor_token_of_another_subject(idp: httpx.Client) -> None:
    user_token = _user_token(idp)

    response = _exchange(idp, user_token, actor_token=user_token, actor_token_type=ACCESS_TOKEN_TYPE)

    _assert_oauth_error(response, "invalid_grant")


def test_token_exchange_rejects_audience_not_allowed(idp: httpx.Client) -> None:
    response = _exchange(idp, _user_token(idp), client=TICKETER, audience="payments-api")

    _assert_oauth_error(response, "invalid_target")


@pytest.mark.parametrize("audience", [None, NOTES_MCP], ids=["resource alone", "resource and the same audience"])
def test_token_exchange_binds_aud_to_the_requested_resource(idp: httpx.Client, audience: str | None) -> None:
    response = _exchange(idp, _user_token(idp), client=ASSISTANT, resource=NOTES_MCP, audience=audience)

    assert response.status_code == 200, response.text
    claims = _verify(idp, response.json()["access_token"]).claims
    assert claims["aud"] == NOTES_MCP
    assert claims["act"] == {"sub": ASSISTANT.client_id}


@pytest.mark.parametrize(
    "resource",
    [
        "https://notes.example.com/mcp#tools",  # a fragment (RFC 8707 §2)
        "https://notes.example.com/mcp#",
        "/mcp",  # relative
        "notes.example.com/mcp",
        "urn:mcp:notes",  # absolute, but not a URL of a server
        "ftp://notes.example.com/mcp",
        "https:///mcp",  # no host
        "https://alice@notes.example.com/mcp",  # user info
        " https://notes.example.com/mcp",
    ],
)
def test_token_exchange_refuses_a_resource_that_is_not_an_absolute_url_without_fragment(idp: httpx.Client, resource: str) -> None:
    response = _exchange(idp, _user_token(idp), client=ASSISTANT, resource=resource, audience=None)

    _assert_oauth_error(response, "invalid_target")


def test_token_exchange_refuses_a_resource_naming_a_server_the_agent_may_not_act_for(idp: httpx.Client) -> None:
    for resource in ("https://evil.example.com/mcp", "https://notes.example.com/mcp/admin", "https://notes.example.com"):
        response = _exchange(idp, _user_token(idp), client=ASSISTANT, resource=resource, audience=None)
        _assert_oauth_error(response, "invalid_target")
    response = _exchange(idp, _user_token(idp), resource=NOTES_MCP, audience=None)  # the executor may not act for it
    _assert_oauth_error(response, "invalid_target")


@pytest.mark.parametrize("audience", [OTHER_MCP, "tickets-api", NOTES_MCP + "/"])
def test_token_exchange_refuses_a_resource_with_a_different_audience(idp: httpx.Client, audience: str) -> None:
    """Both may name a target the agent may act for: the request is refused for naming two."""
    response = _exchange(idp, _user_token(idp), client=ASSISTANT, resource=NOTES_MCP, audience=audience)

    _assert_oauth_error(response, "invalid_request")


def test_token_exchange_refuses_two_resources_or_none(idp: httpx.Client) -> None:
    two = _exchange(idp, _user_token(idp), client=ASSISTANT, resource=[NOTES_MCP, OTHER_MCP], audience=None)
    none = _exchange(idp, _user_token(idp), client=ASSISTANT, audience=None)

    _assert_oauth_error(two, "invalid_request")
    _assert_oauth_error(none, "invalid_request")


def test_token_exchange_rejects_scope_escalation(idp: httpx.Client) -> None:
    narrow_user_token = _user_token(idp, scope="documents:read")

    response = _exchange(idp, narrow_user_token, scope="tickets:create")

    _assert_oauth_error(response, "invalid_scope")


def test_token_exchange_rejects_scope_outside_client(idp: httpx.Client) -> None:
    response = _exchange(idp, _user_token(idp), client=TICKETER, scope="tickets:create payments:send")

    _assert_oauth_error(response, "invalid_scope")


@pytest.mark.parametrize("forgery", ["other_key", "alg_none", "expired", "other_issuer", "not_at_jwt", "garbage"])
def test_token_exchange_rejects_forged_subject_token(idp: httpx.Client, key_path: Path, forgery: str) -> None:
    our_key = RSAKey.import_key(json.loads(key_path.read_text()))
    kid = our_key.thumbprint()
    now = int(time.time())
    claims = _verify(idp, _user_token(idp)).claims
    header = {"alg": "RS256", "typ": "at+jwt", "kid": kid}
    if forgery == "other_key":
        forged = jwt.encode(header, claims, RSAKey.generate_key(2048))
    elif forgery == "alg_none":
        forged = f"{_b64({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{_b64(claims)}."
    elif forgery == "expired":
        forged = jwt.encode(header, {**claims, "iat": now - 600, "exp": now - 300}, our_key)
    elif forgery == "other_issuer":
        forged = jwt.encode(header, {**claims, "iss": "https://evil.example"}, our_key)
    elif forgery == "not_at_jwt":
        forged = jwt.encode({**header, "typ": "JWT"}, claims, our_key)
    else:
        forged = "not.a.jwt"

    response = _exchange(idp, forged)

    _assert_oauth_error(response, "invalid_grant")
    assert forged not in response.text


def test_token_exchange_refuses_public_client(idp: httpx.Client) -> None:
    response = _exchange(idp, _user_token(idp), client=CLI)

    _assert_oauth_error(response, "invalid_client", status=401)


def test_create_dev_issuer_app_refuses_prod_env(tmp_path: Path) -> None:
    key_path = tmp_path / "signing.jwk.json"

    with pytest.raises(DevIssuerDisabledError):
        create_dev_issuer_app(
            env="prod",
            issuer_url="https://idp.example/dev-idp",
            audience=AUDIENCE,
            key_path=key_path,
            users=DEMO_USERS,
            clients=CLIENTS,
        )
    assert not key_path.exists()


def test_signing_key_persisted_private_and_reused_on_restart(tmp_path: Path) -> None:
    key_path = tmp_path / "nested" / "signing.jwk.json"
    port = free_port()
    issuer_url = f"http://127.0.0.1:{port}/dev-idp"

    with serve_in_thread(_build_app(issuer_url=issuer_url, key_path=key_path), port=port):
        with httpx.Client(base_url=issuer_url) as idp:
            user_token = _user_token(idp)
            first_kid = idp.get("/jwks").json()["keys"][0]["kid"]
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert "d" in json.loads(key_path.read_text())

    with serve_in_thread(_build_app(issuer_url=issuer_url, key_path=key_path), port=port):
        with httpx.Client(base_url=issuer_url) as idp:
            assert idp.get("/jwks").json()["keys"][0]["kid"] == first_kid
            assert _verify(idp, user_token).claims["sub"] == "alice"
            assert _exchange(idp, user_token).status_code == 200
