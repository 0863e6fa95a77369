"""Mandate verifies Keycloak's access tokens by configuration alone, and refuses what is not one for it."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from mandate.auth import TokenVerifier, TrustedIssuer
from mandate.auth.errors import ClientNotAllowedError
from mandate.runtime.settings import Settings
from mandate.devstack.keycloak import EmbeddedKeycloak, demo_login, demo_otp
from mandate.runtime.services import trusted_issuers
from tests.keycloak.helpers import browser_login, exchange, otp_secret, password_grant, totp
from tests.utils.threads import bearer
from tests.utils.tokens import claims_of


def _verifier(settings: Settings, http: httpx.AsyncClient) -> TokenVerifier:
    return TokenVerifier(issuers=trusted_issuers(settings), audience=settings.audience, http=http)


async def test_keycloak_access_token_becomes_principal_with_tenant_groups_and_acr(
    keycloak: EmbeddedKeycloak, kc_settings: Settings, sub: Callable[[str], str]
) -> None:
    tokens = browser_login(keycloak.issuer, "alice")
    async with httpx.AsyncClient() as http:
        principal = await _verifier(kc_settings, http).verify(tokens["access_token"])
    assert (principal.issuer, principal.issuer_key, principal.subject) == (keycloak.issuer, "kc", sub("alice"))
    assert principal.user_id == f"user:kc|{sub('alice')}"
    assert (principal.tenant, principal.groups, principal.roles) == ("acme", ("acme-finance",), ("employee",))
    assert {"documents:read", "tickets:write", "payments:write"} <= principal.scopes
    assert principal.acr == "urn:mandate:acr:pwd"
    assert principal.auth_time is not None and abs(principal.auth_time - time.time()) < 120
    assert principal.client_id == "mandate-cli" and principal.actor_chain == ()


def test_keycloak_access_token_is_accepted_over_http(kc_client: httpx.Client, kc_token: Callable[..., str]) -> None:
    response = kc_client.post("/threads", json={}, headers=bearer(kc_token("dave")))
    assert response.status_code == 200, response.text


def test_keycloak_id_token_is_refused_even_with_the_service_audience(
    keycloak: EmbeddedKeycloak, kc_client: httpx.Client, kc_settings: Settings
) -> None:
    id_token = browser_login(keycloak.issuer, "alice")["id_token"]
    claims = claims_of(id_token)
    assert kc_settings.audience in claims["aud"] and claims["typ"] == "ID"  # the realm puts our audience there too
    response = kc_client.post("/threads", json={}, headers=bearer(id_token))
    assert (response.status_code, response.json()["code"]) == (401, "wrong_token_type")


def test_keycloak_token_for_another_audience_is_refused(
    keycloak: EmbeddedKeycloak, kc_client: httpx.Client, kc_settings: Settings
) -> None:
    delegated = exchange(
        keycloak.issuer,
        browser_login(keycloak.issuer, "alice")["access_token"],
        client_id=kc_settings.agents["executor"].client_id,
        client_secret=kc_settings.agents["executor"].client_secret.get_secret_value(),
        audience=kc_settings.tickets_api_url,
        scope="tickets:write",
    )
    assert delegated.status_code == 200, delegated.text
    response = kc_client.post("/threads", json={}, headers=bearer(delegated.json()["access_token"]))
    assert (response.status_code, response.json()["code"]) == (401, "wrong_audience")


def test_keycloak_token_of_tenant_not_configured_for_issuer_is_refused(
    keycloak: EmbeddedKeycloak, kc_client: httpx.Client
) -> None:
    eve = browser_login(keycloak.issuer, "eve")["access_token"]
    assert claims_of(eve)["tenant"] == "initech"  # a real Keycloak user, in a tenant Mandate did not give Keycloak
    response = kc_client.post("/threads", json={}, headers=bearer(eve))
    assert (response.status_code, response.json()["code"]) == (401, "tenant_not_allowed")


async def test_keycloak_token_of_client_not_pinned_for_issuer_is_refused(
    keycloak: EmbeddedKeycloak, kc_settings: Settings
) -> None:
    [configured] = kc_settings.oidc_issuers
    only_page = kc_settings.model_copy(
        update={"oidc_issuers": [configured.model_copy(update={"client_ids": ["mandate-approver-page"]})]}
    )
    token = browser_login(keycloak.issuer, "alice")["access_token"]  # issued to mandate-cli
    async with httpx.AsyncClient() as http:
        with pytest.raises(ClientNotAllowedError):
            await _verifier(only_page, http).verify(token)


def test_keycloak_direct_grant_with_otp_is_never_mfa_for_mandate(keycloak: EmbeddedKeycloak) -> None:
    without_code = password_grant(keycloak.issuer, "alice")
    assert without_code.status_code == 401 or without_code.json()["error"] == "invalid_grant"  # OTP is configured
    answer = password_grant(keycloak.issuer, "alice", otp=True)
    assert answer.status_code == 200, answer.text
    claims = claims_of(answer.json()["access_token"])
    # Keycloak's direct grant ignores levels of authentication: the password level and no auth_time,
    # so a step-up policy (acr mfa, auth_time fresh) can never be met this way. Use the login pages.
    assert claims["acr"] == "urn:mandate:acr:pwd" and "auth_time" not in claims


def test_keycloak_issuer_needs_nothing_but_configuration(kc_settings: Settings) -> None:
    [issuer] = trusted_issuers(kc_settings)
    assert issuer == TrustedIssuer(
        issuer=issuer.issuer, key="kc", tenants=frozenset({"acme", "globex"}), require_at_jwt=False, typ_claim="Bearer"
    )


def test_demo_login_for_the_cli_gives_password_or_mfa_tokens(keycloak: EmbeddedKeycloak) -> None:
    assert demo_otp("bob") == totp(otp_secret("bob"))
    assert claims_of(demo_login(keycloak.issuer, "bob"))["acr"] == "urn:mandate:acr:pwd"
    mfa = claims_of(demo_login(keycloak.issuer, "bob", mfa=True))
    assert mfa["acr"] == "urn:mandate:acr:mfa" and abs(mfa["auth_time"] - time.time()) < 120
