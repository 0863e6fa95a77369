"""The token broker against the real dev issuer: cached per user, never across users; a URL target
asked for as an RFC 8707 resource."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import parse_qs

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mandate.audit import build_tracer_provider
from mandate.auth import TokenBroker
from mandate.auth.errors import TokenExchangeError
from mandate.auth.exchange import is_resource, target_parameters
from mandate.runtime.settings import Settings
from tests.utils.servers import serve_in_thread
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


def _recording_token_endpoint(token_endpoint: str, sent: list[dict[str, list[str]]]) -> Starlette:
    """A pass-through to the real token endpoint that records each request's form (what the broker sends)."""

    async def token(request: Request) -> Response:
        body = await request.body()
        sent.append(parse_qs(body.decode()))
        headers = {k: v for k, v in request.headers.items() if k in ("authorization", "content-type")}
        async with httpx.AsyncClient() as client:
            answer = await client.post(token_endpoint, content=body, headers=headers)
        return Response(answer.content, status_code=answer.status_code, media_type="application/json")

    return Starlette(routes=[Route("/token", token, methods=["POST"])])


@pytest.fixture()
def recorded(stack_settings: Settings, base_url: str) -> Iterator[tuple[TokenBroker, list[dict[str, list[str]]]]]:
    """The executor's broker, its requests passing through a recorder on their way to the dev issuer."""
    sent: list[dict[str, list[str]]] = []
    with serve_in_thread(_recording_token_endpoint(stack_settings.token_endpoint, sent)) as proxy:
        broker = TokenBroker(
            token_endpoint=f"{proxy}/token",
            client_id=stack_settings.agents["executor"].client_id,
            client_secret=stack_settings.agents["executor"].client_secret.get_secret_value(),
            tracer=build_tracer_provider(InMemorySpanExporter()).get_tracer("test"),
        )
        yield broker, sent


async def test_exchange_for_a_url_names_it_as_the_resource_and_the_same_audience(
    stack_settings: Settings, recorded: tuple[TokenBroker, list[dict[str, list[str]]]], token: Callable[..., str]
) -> None:
    broker, sent = recorded
    tickets = stack_settings.tickets_api_url
    delegated = await broker.exchange(
        token("alice"), issuer=stack_settings.dev_issuer_url, subject="alice", audience=tickets, scopes=["tickets:write"]
    )
    [form] = sent
    assert (form["resource"], form["audience"]) == ([tickets], [tickets])
    assert claims_of(delegated.access_token)["aud"] == tickets == delegated.audience


async def test_exchange_for_a_url_the_agent_may_not_act_for_is_refused_as_invalid_target(
    stack_settings: Settings, recorded: tuple[TokenBroker, list[dict[str, list[str]]]], token: Callable[..., str]
) -> None:
    broker, sent = recorded
    with pytest.raises(TokenExchangeError, match="invalid_target"):
        await broker.exchange(
            token("alice"), issuer=stack_settings.dev_issuer_url, subject="alice",
            audience="https://notes.attacker.example/mcp", scopes=["tickets:write"],
        )
    assert sent[0]["resource"] == ["https://notes.attacker.example/mcp"]


def test_target_parameters_name_a_url_as_resource_and_a_logical_name_as_audience() -> None:
    assert target_parameters("https://notes.example.com/mcp") == {
        "resource": "https://notes.example.com/mcp",
        "audience": "https://notes.example.com/mcp",
    }
    assert target_parameters("http://127.0.0.1:8000/demo/tickets")["resource"] == "http://127.0.0.1:8000/demo/tickets"
    for logical in ("tickets-api", "urn:example:tickets", "https://notes.example.com/mcp#x", "https:///mcp", "/mcp"):
        assert target_parameters(logical) == {"audience": logical}, logical
        assert not is_resource(logical)
