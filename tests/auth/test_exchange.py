"""The token broker against the real dev issuer: cached per user, never across users."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate.audit import build_tracer_provider
from mandate.auth import TokenBroker
from mandate.auth.errors import TokenExchangeError
from mandate.runtime.settings import Settings
from tests.utils.tokens import claims_of


def _broker(settings: Settings, spans: InMemorySpanExporter) -> TokenBroker:
    return TokenBroker(
        token_endpoint=settings.token_endpoint,
        client_id=settings.agents["executor"].client_id,
        client_secret=settings.agents["executor"].client_secret.get_secret_value(),
        tracer=build_tracer_provider(spans).get_tracer("test"),
    )


async def test_exchange_caches_per_user_and_never_shares_across_users(
    stack_settings: Settings, base_url: str, token: Callable[..., str]
) -> None:
    spans = InMemorySpanExporter()
    broker = _broker(stack_settings, spans)
    issuer, audience = stack_settings.dev_issuer_url, stack_settings.tickets_api_url
    alice_token, bob_token = token("alice"), token("bob")
    first = await broker.exchange(alice_token, issuer=issuer, subject="alice", audience=audience, scopes=["tickets:write"])
    again = await broker.exchange(alice_token, issuer=issuer, subject="alice", audience=audience, scopes=["tickets:write"])
    bobs = await broker.exchange(bob_token, issuer=issuer, subject="bob", audience=audience, scopes=["tickets:write"])
    assert again is first
    cached = [s.attributes["mandate.exchange.cached"] for s in spans.get_finished_spans()]
    assert cached == [False, True, False]
    assert claims_of(first.access_token)["sub"] == "alice"
    assert claims_of(bobs.access_token)["sub"] == "bob"
    assert claims_of(first.access_token)["act"] == {"sub": stack_settings.agents["executor"].client_id}
    assert first.expires_at - claims_of(first.access_token)["iat"] <= 301
    assert first.access_token not in repr(first)


async def test_exchange_for_unlisted_audience_is_refused(
    stack_settings: Settings, base_url: str, token: Callable[..., str]
) -> None:
    broker = _broker(stack_settings, InMemorySpanExporter())
    try:
        await broker.exchange(
            token("alice"), issuer=stack_settings.dev_issuer_url, subject="alice",
            audience="https://payroll.example", scopes=["tickets:write"],
        )
    except TokenExchangeError as exc:
        assert "invalid_target" in exc.message
    else:
        raise AssertionError("an exchange for an audience the agent may not act for succeeded")
