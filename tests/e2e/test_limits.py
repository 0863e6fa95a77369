"""Documented limits: oversized bodies, metadata, answers and pages are refused with a code, never a 500."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest

from mandate.audit import build_tracer_provider
from mandate.runtime.settings import DevSettings, Settings
from mandate.api.app import create_app
from mandate.api.limits import MAX_BODY_BYTES, MAX_METADATA_BYTES, MAX_RESUME_BYTES
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.threads import ask, bearer, new_thread
from tests.utils.tokens import login


def test_body_over_the_limit_is_refused_unread(client: httpx.Client, token: Callable[..., str]) -> None:
    alice = token("alice")
    oversized = b'{"metadata": {"x": "' + b"a" * MAX_BODY_BYTES + b'"}}'
    declared = client.post("/threads", content=oversized, headers={**bearer(alice), "content-type": "application/json"})
    assert (declared.status_code, declared.json()["code"]) == (413, "request_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield oversized[: MAX_BODY_BYTES // 2]
        yield oversized[MAX_BODY_BYTES // 2 :]

    streamed = client.post("/threads", content=chunks(), headers={**bearer(alice), "content-type": "application/json"})
    assert (streamed.status_code, streamed.json()["code"]) == (413, "request_too_large")
    assert client.get("/ok").status_code == 200


def test_oversized_metadata_and_answers_are_422(client: httpx.Client, token: Callable[..., str]) -> None:
    alice = token("alice")
    big = {"note": "x" * MAX_METADATA_BYTES}
    assert client.post("/threads", json={"metadata": big}, headers=bearer(alice)).status_code == 422
    thread = new_thread(client, alice)
    assert client.patch(f"/threads/{thread}", json={"metadata": big}, headers=bearer(alice)).status_code == 422
    assert ask(client, alice, thread, "Open a ticket: fan noise").json()["__interrupt__"]
    huge_answer = {"command": {"resume": {"decisions": [{"type": "approve", "message": "y" * MAX_RESUME_BYTES}]}}}
    refused = client.post(f"/threads/{thread}/runs/wait", json=huge_answer, headers=bearer(alice))
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid_request")
    too_many = {"input": {"messages": [{"role": "user", "content": "hi"}] * 21}}
    assert client.post(f"/threads/{thread}/runs/wait", json=too_many, headers=bearer(alice)).status_code == 422


@pytest.mark.parametrize(
    ("method", "path", "params", "body"),
    [
        ("GET", "/threads/{t}/history", {"limit": 10**12}, None),
        ("POST", "/threads/{t}/history", None, {"limit": 10**12}),
        ("GET", "/threads/{t}/runs", {"limit": 10**12}, None),
        ("GET", "/threads/{t}/runs", {"offset": 10**12}, None),
        ("POST", "/threads/search", None, {"limit": 10**12}),
        ("POST", "/threads/search", None, {"offset": 10**12}),
    ],
)
def test_unbounded_paging_is_refused_not_a_500(
    client: httpx.Client, token: Callable[..., str], method: str, path: str, params: dict[str, int] | None, body: dict[str, int] | None
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    response = client.request(method, path.format(t=thread), params=params, json=body, headers=bearer(alice))
    assert (response.status_code, response.json()["code"]) == (422, "invalid_request")


QUOTA = 2


@pytest.fixture(scope="module")
def quota_app(stack_settings: Settings) -> Iterator[str]:
    """A second Mandate on the same database, with its own dev issuer (so its users own no threads yet)."""
    port = free_port()
    settings = DevSettings(
        env="test", port=port, data_dir=stack_settings.data_dir, database_url=stack_settings.database_url,
        fga_api_url=stack_settings.fga_api_url, max_threads_per_user=QUOTA, seed_demo=False,
    )
    with serve_in_thread(create_app(settings, tracer_provider=build_tracer_provider()), port=port) as url:
        yield url


def test_thread_quota_is_per_user(quota_app: str) -> None:
    with httpx.Client(base_url=quota_app, timeout=60) as client:
        alice, dave = login(quota_app, "alice"), login(quota_app, "dave")
        for _ in range(QUOTA):
            assert client.post("/threads", json={}, headers=bearer(alice)).status_code == 200
        over = client.post("/threads", json={}, headers=bearer(alice))
        assert (over.status_code, over.json()["code"]) == (429, "thread_quota_exceeded")
        assert client.post("/threads", json={}, headers=bearer(dave)).status_code == 200


@pytest.mark.parametrize("metadata", [{"a": "\u0000"}, {"\u0000": 1}, {"a": [{"b": "x\u0000"}]}])
def test_metadata_with_nul_characters_is_422_not_500(client: httpx.Client, token: Callable[..., str], metadata: dict[str, object]) -> None:
    """Postgres cannot keep NUL in JSON: refused at the edge, on every route that stores or filters metadata."""
    alice = token("alice")
    thread = new_thread(client, alice)
    for method, path in (("POST", "/threads"), ("POST", "/threads/search"), ("PATCH", f"/threads/{thread}")):
        response = client.request(method, path, json={"metadata": metadata}, headers=bearer(alice))
        assert (response.status_code, response.json()["code"]) == (422, "invalid_request")
