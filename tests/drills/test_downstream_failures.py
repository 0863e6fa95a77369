"""Drill: the downstream API fails (5xx, timeouts, resets); retries carry one key and make one effect."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate.api.app import create_app
from mandate.audit import build_tracer_provider
from mandate.auth import DelegatedToken
from mandate.runtime.settings import DevSettings, Settings
from mandate.tools import DownstreamError, ToolSpec, call_downstream
from mandate.tools.downstream import DOWNSTREAM_ATTEMPTS
from tests.drills.flaky_api import FlakyApi, flaky_api
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.threads import ask, last_answer, new_thread, resume
from tests.utils.tokens import login
from tests.utils.built_in import built_in_tools

ATTEMPT_TIMEOUT_S = 0.5
"""The client's timeout in these drills: a ``hang`` step outlives it, so the attempt times out."""
BACKOFF_S = 0.01
"""Short backoff: the drills prove what is retried, not how long it waits."""
TOKEN = DelegatedToken(access_token="delegated-token-for-the-drill", audience="", scopes=(), expires_at=0)
"""An opaque stand-in: the downstream here never verifies it, and the test checks it is never echoed."""
KEY = "thread-1:call_1"
ARGS = {"title": "VPN is down in Berlin", "description": ""}


@pytest.fixture()
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=ATTEMPT_TIMEOUT_S) as client:
        yield client


def _tickets(url: str) -> ToolSpec:
    return built_in_tools(tickets_api_url=url, payments_api_url=url).get("create_ticket")


async def _call(http: httpx.AsyncClient, url: str) -> dict[str, object]:
    return await call_downstream(http, _tickets(url), args=ARGS, token=TOKEN, idempotency_key=KEY, backoff=BACKOFF_S)


@pytest.mark.parametrize(
    "script",
    [
        ("503",),
        ("500", "502"),
        ("reset",),
        ("commit_then_reset",),  # the effect happened and its answer was lost
        ("hang",),  # the attempt times out (the server may still be working on it)
        ("503", "commit_then_reset"),
    ],
)
async def test_call_downstream_transient_failures_retry_with_one_key_to_exactly_one_effect(
    http: httpx.AsyncClient, script: tuple[str, ...]
) -> None:
    with flaky_api(*script) as api:
        result = await _call(http, api.url)
    assert len(api.effects) == 1
    [effect] = api.effects.values()
    assert result == {"id": effect["id"], "status": "created"}
    assert api.attempts == [KEY] * (len(script) + 1)


async def test_call_downstream_that_never_succeeds_fails_clearly_after_bounded_attempts(http: httpx.AsyncClient) -> None:
    with flaky_api("503", repeat=True) as api:
        with pytest.raises(DownstreamError) as raised:
            await _call(http, api.url)
    assert raised.value.code == "downstream_failed"
    assert "503" in raised.value.message and f"{DOWNSTREAM_ATTEMPTS} attempts" in raised.value.message
    assert TOKEN.access_token not in raised.value.message
    assert api.attempts == [KEY] * DOWNSTREAM_ATTEMPTS
    assert api.effects == {}


@pytest.mark.parametrize("status", ["400", "401", "403", "404", "409", "422", "429"])
async def test_call_downstream_refusal_4xx_is_never_retried(http: httpx.AsyncClient, status: str) -> None:
    with flaky_api(status) as api:
        with pytest.raises(DownstreamError) as raised:
            await _call(http, api.url)
    assert f"refused the call ({status})" in raised.value.message
    assert api.attempts == [KEY]
    assert api.effects == {}


async def test_call_downstream_unreachable_api_fails_after_bounded_attempts(http: httpx.AsyncClient) -> None:
    dead = f"http://127.0.0.1:{free_port()}/tickets"
    started = time.monotonic()
    with pytest.raises(DownstreamError) as raised:
        await _call(http, dead)
    assert "could not be reached (ConnectError)" in raised.value.message
    assert time.monotonic() - started < 60, "a refused connection must not be retried without bound"


async def test_call_downstream_hanging_api_times_out_on_every_attempt_and_fails(http: httpx.AsyncClient) -> None:
    with flaky_api("hang", repeat=True) as api:
        with pytest.raises(DownstreamError) as raised:
            await _call(http, api.url)
    assert "ReadTimeout" in raised.value.message
    assert api.attempts == [KEY] * DOWNSTREAM_ATTEMPTS


# --- end to end: a ticket through Mandate, the tickets API failing ---------------------------------


@pytest.fixture(scope="module")
def flaky_tickets(stack_settings: Settings) -> Iterator[tuple[str, FlakyApi]]:
    """Mandate on the session's stack, its tickets API a flaky one; yields (Mandate's URL, the API)."""
    port = free_port()
    with flaky_api() as api:
        settings = DevSettings(
            env="test", port=port, data_dir=stack_settings.data_dir, database_url=stack_settings.database_url,
            fga_api_url=stack_settings.fga_api_url, tickets_api_url=api.url,
        )
        with serve_in_thread(create_app(settings, tracer_provider=build_tracer_provider(InMemorySpanExporter())), port=port) as url:
            yield url, api


def _approve_ticket(url: str, title: str) -> tuple[str, dict[str, Any]]:
    alice = login(url, "alice")
    with httpx.Client(base_url=url, timeout=60) as client:
        thread = new_thread(client, alice)
        paused = ask(client, alice, thread, f"Open a ticket: {title}")
        assert paused.json()["__interrupt__"][0]["value"]["kind"] == "consent", paused.text
        approved = resume(client, alice, thread, {"decisions": [{"type": "approve"}]})
        assert approved.status_code == 200, approved.text
        return thread, approved.json()


def test_ticket_through_failing_api_is_retried_with_one_key_and_made_once(
    flaky_tickets: tuple[str, FlakyApi], db: psycopg.Connection
) -> None:
    url, api = flaky_tickets
    api.script[:] = ["503", "commit_then_reset"]
    thread, values = _approve_ticket(url, "printer on fire")
    [outcome] = values["outcomes"]
    assert (outcome["status"], outcome["code"]) == ("succeeded", "ok")
    assert "create_ticket: done" in last_answer(values)
    keys = [key for key in api.attempts if key and key.startswith(f"{thread}:")]
    assert len(keys) == 3 and len(set(keys)) == 1  # three attempts, one idempotency key
    assert [effect["id"] for key, effect in api.effects.items() if key == keys[0]] == [outcome["detail"]["id"]]
    events = _audit_events(db, thread)
    assert events.count("tool.started") == 1 and events.count("tool.succeeded") == 1


def test_ticket_through_api_that_never_recovers_fails_clearly_and_is_audited(
    flaky_tickets: tuple[str, FlakyApi], db: psycopg.Connection
) -> None:
    url, api = flaky_tickets
    api.script[:] = ["503"] * DOWNSTREAM_ATTEMPTS
    thread, values = _approve_ticket(url, "coffee machine leaks")
    [outcome] = values["outcomes"]
    assert (outcome["status"], outcome["code"]) == ("failed", "downstream_failed")
    assert not [key for key in api.effects if key.startswith(f"{thread}:")]
    assert [key for key in api.attempts if key and key.startswith(f"{thread}:")] == [f"{thread}:{outcome['call_id']}"] * DOWNSTREAM_ATTEMPTS
    events = _audit_events(db, thread)
    assert events.count("tool.started") == 1 and events.count("tool.failed") == 1
    assert "tool.succeeded" not in events


def _audit_events(db: psycopg.Connection, thread: str) -> list[str]:
    rows = db.execute("SELECT event FROM mandate.audit_records WHERE thread_id = %s ORDER BY seq", (thread,)).fetchall()
    return [row[0] for row in rows]
