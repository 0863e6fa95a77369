"""Drill: the issuer's JWKS becomes unreachable. Tokens signed with cached keys still verify until
they expire; unknown keys are refused; a request that needs keys waits no longer than the fetch
timeout, then is refused with 503 ``issuer_unavailable``."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import RSAKey
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate.api.app import create_app
from mandate.audit import build_tracer_provider
from mandate.auth.verifier import JWKS_FETCH_TIMEOUT_SECONDS
from mandate.runtime.settings import DevSettings, IssuerSettings, Settings
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.threads import bearer
from tests.utils.tokens import sign

KEY = RSAKey.generate_key(2048, parameters={"kid": "drill-1"})
UNPUBLISHED = RSAKey.generate_key(2048, parameters={"kid": "drill-unpublished"})
LIVENESS_S = JWKS_FETCH_TIMEOUT_SECONDS * 4
"""The client's own bound: a request still unanswered by then has waited far past the fetch timeout."""
TRICKLE_INTERVAL_S = 1.0
"""How often the silent issuer sends one more byte: well inside any read timeout."""


def _issuer_app(url: str) -> FastAPI:
    """A third-party issuer's public side: OIDC discovery and its JWKS."""
    app = FastAPI()

    @app.get("/.well-known/openid-configuration")
    def discovery() -> dict[str, Any]:
        return {"issuer": url, "jwks_uri": f"{url}/jwks"}

    @app.get("/jwks")
    def jwks() -> dict[str, Any]:
        return {"keys": [KEY.as_dict(private=False)]}

    return app


@pytest.fixture(scope="module")
def silent_issuer() -> Iterator[str]:
    """An issuer URL that answers every request with headers and then one byte a second, never ending.

    No single read waits long, so only the verifier's bound on the whole fetch can end the wait.
    """
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
                while not stop.wait(TRICKLE_INTERVAL_S):
                    conn.sendall(b" ")
            except OSError:
                pass  # the client gave up

    def accept(listener: socket.socket) -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        threading.Thread(target=accept, args=(listener,), daemon=True).start()
        try:
            yield f"http://127.0.0.1:{listener.getsockname()[1]}"
        finally:
            stop.set()
            listener.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def mandate(stack_settings: Settings, silent_issuer: str) -> Iterator[tuple[str, str, str]]:
    """Mandate trusting the drill's issuer and the silent one; yields (Mandate's URL, issuer URL, audience)."""
    issuer_url = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    settings = DevSettings(
        env="test", port=port, data_dir=stack_settings.data_dir, database_url=stack_settings.database_url,
        fga_api_url=stack_settings.fga_api_url,
        oidc_issuers=[
            IssuerSettings(issuer=issuer_url, id="drill", tenants=["acme"]),
            IssuerSettings(issuer=silent_issuer, id="silent", tenants=["acme"]),
        ],
    )
    with serve_in_thread(create_app(settings, tracer_provider=build_tracer_provider(InMemorySpanExporter())), port=port) as url:
        yield url, issuer_url, settings.audience


def _token(issuer: str, audience: str, *, key: RSAKey = KEY, expires_in: int = 600) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "sub": "drill-user", "aud": audience, "iat": now, "exp": now + expires_in, "tenant": "acme"}
    return sign(claims, key)


def _search(url: str, token: str) -> httpx.Response:
    """An authenticated request: listing the caller's threads."""
    return httpx.post(f"{url}/threads/search", json={}, headers=bearer(token), timeout=LIVENESS_S)


def test_jwks_unreachable_cached_keys_verify_until_expiry_and_unknown_keys_are_refused(
    mandate: tuple[str, str, str],
) -> None:
    url, issuer_url, audience = mandate
    port = int(issuer_url.rsplit(":", 1)[1])
    with serve_in_thread(_issuer_app(issuer_url), port=port):
        assert _search(url, _token(issuer_url, audience)).status_code == 200  # keys fetched and cached
    # The issuer is gone: its port refuses connections.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{issuer_url}/jwks", timeout=5)

    fresh = _search(url, _token(issuer_url, audience))
    assert fresh.status_code == 200, fresh.text  # signed with a cached key: still verifies

    expired = _search(url, _token(issuer_url, audience, expires_in=-1))
    assert (expired.status_code, expired.json()["code"]) == (401, "token_expired")  # the cache never extends exp

    # An unknown key: the one fetch it may cause fails (issuer down), and within the cooldown none is tried.
    first = _search(url, _token(issuer_url, audience, key=UNPUBLISHED))
    assert (first.status_code, first.json()["code"]) == (503, "issuer_unavailable")
    again = _search(url, _token(issuer_url, audience, key=UNPUBLISHED))
    assert (again.status_code, again.json()["code"]) == (401, "unknown_key")

    assert _search(url, _token(issuer_url, audience)).status_code == 200  # the known key is unaffected


def test_jwks_hanging_issuer_request_is_refused_within_the_fetch_timeout(
    mandate: tuple[str, str, str], silent_issuer: str
) -> None:
    url, _, audience = mandate
    # httpx raises ReadTimeout if Mandate holds the request past LIVENESS_S: the bound is the proof.
    refused = _search(url, _token(silent_issuer, audience))
    assert (refused.status_code, refused.json()["code"]) == (503, "issuer_unavailable")
    assert "drill" not in refused.text and "eyJ" not in refused.text  # a fixed message, no token echoed
