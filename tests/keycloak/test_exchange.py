"""Delegated tool tokens by Keycloak's standard token exchange: bound to the tool's API, downscoped, short.

Keycloak 26.7 has no RFC 8693 delegation (no ``actor_token``, no ``act`` of its own; its experimental
``token-exchange-delegation`` only adds ``may_act`` for users). The realm gives each agent client a
hard-coded ``act: {"sub": <client id>}`` mapper, and the agent clients can obtain tokens only by
exchange (no service account, no direct grant, no login), so ``act.sub`` always equals ``azp``: the
agent that exchanged. The demo APIs verify ``aud``, ``scope`` and ``act`` as they do for the dev issuer.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import psycopg
import pytest
from opentelemetry import trace

from mandate.auth import TokenBroker, TokenExchangeError
from mandate.runtime.settings import Settings
from mandate.devstack.keycloak import EmbeddedKeycloak
from tests.keycloak.helpers import browser_login, exchange
from tests.utils.threads import bearer
from tests.utils.tokens import claims_of


def _broker(settings: Settings, agent: str) -> TokenBroker:
    client = settings.agents[agent]
    return TokenBroker(
        token_endpoint=settings.token_endpoint,
        client_id=client.client_id,
        client_secret=client.client_secret.get_secret_value(),
        tracer=trace.get_tracer("test"),
    )


async def test_exchange_at_keycloak_is_bound_to_the_api_downscoped_short_and_names_the_agent(
    keycloak: EmbeddedKeycloak,
    kc_settings: Settings,
    kc_client: httpx.Client,
    kc_db: psycopg.Connection,
    sub: Callable[[str], str],
) -> None:
    alice = browser_login(keycloak.issuer, "alice")["access_token"]
    delegated = await _broker(kc_settings, "executor").exchange(
        alice,
        issuer=keycloak.issuer,
        subject=sub("alice"),
        audience=kc_settings.tickets_api_url,
        scopes=["tickets:write"],
    )
    claims = claims_of(delegated.access_token)
    assert claims["aud"] == kc_settings.tickets_api_url  # only the tool's API, not Mandate, not the other API
    assert claims["scope"] == "tickets:write" and delegated.scopes == ("tickets:write",)
    assert claims["exp"] - claims["iat"] <= 300
    assert (claims["sub"], claims["tenant"], claims["typ"]) == (sub("alice"), "acme", "Bearer")
    assert claims["act"] == {"sub": "agent-executor"} and claims["azp"] == "agent-executor"

    created = kc_client.post(
        "/demo/tickets",
        json={"title": "exchanged at Keycloak"},
        headers={**bearer(delegated.access_token), "Idempotency-Key": f"kc-exchange-{claims['jti']}"},
    )
    assert created.status_code == 200, created.text
    row = kc_db.execute(
        "SELECT subject, actor, audience, scopes FROM mandate.demo_effects WHERE id = %s", (created.json()["id"],)
    ).fetchone()
    assert row == (sub("alice"), "agent-executor", kc_settings.tickets_api_url, ["tickets:write"])


async def test_agent_without_a_grant_for_the_api_cannot_exchange_for_it(
    keycloak: EmbeddedKeycloak, kc_settings: Settings, sub: Callable[[str], str]
) -> None:
    alice = browser_login(keycloak.issuer, "alice", otp=True)["access_token"]
    with pytest.raises(TokenExchangeError, match="invalid_scope"):
        await _broker(kc_settings, "operations").exchange(
            alice,
            issuer=keycloak.issuer,
            subject=sub("alice"),
            audience=kc_settings.payments_api_url,
            scopes=["payments:write"],
        )


def test_exchange_needs_the_agents_own_credentials(keycloak: EmbeddedKeycloak, kc_settings: Settings) -> None:
    alice = browser_login(keycloak.issuer, "alice")["access_token"]
    answer = exchange(
        keycloak.issuer,
        alice,
        client_id="agent-executor",
        client_secret="not-the-secret",
        audience=kc_settings.tickets_api_url,
        scope="tickets:write",
    )
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized_client"


def test_delegated_token_and_user_token_are_refused_at_the_wrong_api(
    keycloak: EmbeddedKeycloak, kc_settings: Settings, kc_client: httpx.Client
) -> None:
    alice = browser_login(keycloak.issuer, "alice")["access_token"]
    executor = kc_settings.agents["executor"]
    tickets_token = exchange(
        keycloak.issuer,
        alice,
        client_id=executor.client_id,
        client_secret=executor.client_secret.get_secret_value(),
        audience=kc_settings.tickets_api_url,
        scope="tickets:write",
    ).json()["access_token"]
    payment = {"amount": 1, "recipient": "Mallory"}
    replay = kc_client.post(
        "/demo/payments", json=payment, headers={**bearer(tickets_token), "Idempotency-Key": "kc-x1"}
    )
    assert (replay.status_code, replay.json()["code"]) == (401, "wrong_audience")
    direct = kc_client.post("/demo/tickets", json={"title": "t"}, headers={**bearer(alice), "Idempotency-Key": "kc-x2"})
    assert (direct.status_code, direct.json()["code"]) == (401, "wrong_audience")


def test_keycloak_exchange_keeps_the_user_but_not_the_users_authentication_level(
    keycloak: EmbeddedKeycloak, kc_settings: Settings
) -> None:
    """Pins a Keycloak behaviour the README states: an exchanged token says acr pwd even for an MFA login.

    Mandate's gate checks the user's own token (acr, auth_time) before it exchanges it, so the
    payment policy holds; a downstream API cannot re-check the level from a Keycloak delegated token.
    """
    alice_mfa = browser_login(keycloak.issuer, "alice", otp=True)["access_token"]
    assert claims_of(alice_mfa)["acr"] == "urn:mandate:acr:mfa"
    executor = kc_settings.agents["executor"]
    delegated = exchange(
        keycloak.issuer,
        alice_mfa,
        client_id=executor.client_id,
        client_secret=executor.client_secret.get_secret_value(),
        audience=kc_settings.payments_api_url,
        scope="payments:write",
    ).json()["access_token"]
    claims = claims_of(delegated)
    assert claims["acr"] == "urn:mandate:acr:pwd"
    assert claims["auth_time"] == claims_of(alice_mfa)["auth_time"]
