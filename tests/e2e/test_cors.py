"""CORS: browser pages of the operator's allowed origins (LangGraph Studio's) may call the API; no other may.

Preflights and headers over real HTTP, then real cross-origin fetch() calls in headless Chromium from
pages served on other loopback origins, against a Mandate with real issuer, OpenFGA and Postgres.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from selenium.webdriver.chrome.webdriver import WebDriver
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from mandate.audit import build_tracer_provider
from mandate.runtime.settings import DevSettings, Settings
from mandate.api.app import create_app
from mandate.runtime.settings import ConfigurationError
from tests.utils.browser import headless_chromium
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.threads import bearer
from tests.utils.tokens import login

STUDIO = "https://smith.langchain.com"
QUESTION = "Summarize the latest contract terms for ACME."
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>a page of another origin</title>
<script>
// What Studio does: fetch() Mandate directly with a bearer token, and read the answer.
window.callMandate = async (url, init) => {
  try {
    const response = await fetch(url, init);
    const headers = {};
    response.headers.forEach((value, name) => { headers[name] = value; });
    return {status: response.status, headers: headers, body: await response.text()};
  } catch (error) {
    return {error: String(error)};
  }
};
</script></head><body>cross-origin caller</body></html>"""
CALL = "const [url, init, done] = arguments; window.callMandate(url, init).then(done);"


def _preflight(client: httpx.Client, path: str, origin: str, *, method: str = "POST", **extra: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
        **extra,
    }
    return client.options(path, headers=headers)


# ---- settings ---------------------------------------------------------------------------------


def test_cors_settings_default_to_none_and_dev_allows_studio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MANDATE_CORS_ORIGINS", raising=False)
    assert Settings().cors_origins == []
    assert DevSettings().cors_origins == [STUDIO]
    monkeypatch.setenv("MANDATE_CORS_ORIGINS", "https://Studio.Example.com/, http://127.0.0.1:3000,https://a.example:443")
    assert Settings().cors_origins == ["https://studio.example.com", "http://127.0.0.1:3000", "https://a.example"]
    monkeypatch.setenv("MANDATE_CORS_ORIGINS", '["https://smith.langchain.com", "https://eu.smith.langchain.com"]')
    assert DevSettings().cors_origins == [STUDIO, "https://eu.smith.langchain.com"]
    monkeypatch.setenv("MANDATE_CORS_ORIGINS", "")
    assert DevSettings().cors_origins == [], "an operator can turn CORS off in dev too"


@pytest.mark.parametrize(
    "origins",
    ["https://smith.langchain.com/studio", "https://*.langchain.com", "null", "smith.langchain.com", "*,https://a.example",
     "https://a.example?x=1", "javascript://a.example"],
)
def test_cors_settings_refuse_what_is_not_an_origin(origins: str) -> None:
    with pytest.raises(ValueError, match="cors_origins"):
        Settings(cors_origins=origins)


def test_cors_wildcard_is_refused_in_production(tmp_path: Path) -> None:
    ready = {
        "env": "prod", "database_url": "postgresql://db/mandate", "fga_api_url": "http://fga:8080",
        "oidc_issuers": [{"issuer": "https://idp.example", "id": "idp", "tenants": ["acme"]}],
        "token_endpoint": "https://idp.example/token", "vault_key": "v" * 32, "pseudonym_key": "p" * 32,
        "agents": {}, "audit_signing_key": "pem", "data_dir": tmp_path,
    }
    Settings(**ready, cors_origins=[STUDIO]).check_production_ready()  # an explicit allow-list is fine
    with pytest.raises(ConfigurationError, match="MANDATE_CORS_ORIGINS without '\\*'"):
        Settings(**ready, cors_origins="*").check_production_ready()


async def test_cors_wildcard_in_dev_never_comes_with_credentials(tmp_path: Path) -> None:
    settings = DevSettings(env="test", data_dir=tmp_path, cors_origins="*", database_url="postgresql://unused", fga_api_url="http://unused")
    app = create_app(settings, tracer_provider=build_tracer_provider(InMemorySpanExporter()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mandate") as client:
        answer = await client.options(
            "/threads/search",
            headers={"Origin": "https://any.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"},
        )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in answer.headers
    assert "authorization" in answer.headers["access-control-allow-headers"].lower()


# ---- the service under test (DevSettings: Studio's origin allowed) -----------------------------


def test_cors_preflight_from_studio_is_answered(client: httpx.Client) -> None:
    answer = _preflight(client, "/threads/search", STUDIO, **{"Access-Control-Request-Private-Network": "true"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == STUDIO
    assert answer.headers["access-control-allow-credentials"] == "true"
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "last-event-id"} <= allowed
    assert {"POST", "GET", "DELETE", "PATCH"} <= set(answer.headers["access-control-allow-methods"].split(", "))
    assert answer.headers["access-control-allow-private-network"] == "true"
    assert "Origin" in answer.headers["vary"]


def test_cors_actual_call_from_studio_exposes_what_the_sdk_reads(client: httpx.Client, base_url: str) -> None:
    alice = login(base_url, "alice")
    created = client.post("/threads", json={}, headers={**bearer(alice), "Origin": STUDIO})
    assert created.status_code == 200
    assert created.headers["access-control-allow-origin"] == STUDIO
    exposed = {h.strip().lower() for h in created.headers["access-control-expose-headers"].split(",")}
    assert {"content-location", "location", "www-authenticate"} <= exposed
    refused = client.post("/threads/search", json={}, headers={"Origin": STUDIO})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == STUDIO, (
        "a refusal is readable too, so Studio can show why"
    )


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "https://smith.langchain.com.evil.example", "http://smith.langchain.com", "null"],
)
def test_cors_other_origins_get_no_permission(client: httpx.Client, base_url: str, origin: str) -> None:
    answer = _preflight(client, "/threads/search", origin)
    assert answer.status_code == 400
    assert "access-control-allow-origin" not in answer.headers
    actual = client.post("/threads", json={}, headers={**bearer(login(base_url, "alice")), "Origin": origin})
    assert "access-control-allow-origin" not in actual.headers


@pytest.mark.parametrize("path", ["/ui", "/ui/approvals/x/decision", "/ui/sign-in", "/dev-idp/token", "/demo/payments"])
def test_cors_approver_page_and_issuer_never_answer_cors(client: httpx.Client, path: str) -> None:
    answer = _preflight(client, path, STUDIO)
    assert answer.status_code in (404, 405), answer.text
    assert not [h for h in answer.headers if h.startswith("access-control-")]
    assert not [h for h in client.get(path, headers={"Origin": STUDIO}).headers if h.startswith("access-control-")]


def test_cors_preflight_refuses_headers_and_methods_not_listed(client: httpx.Client) -> None:
    odd_header = _preflight(client, "/threads/search", STUDIO, **{"Access-Control-Request-Headers": "authorization,x-forwarded-user"})
    assert odd_header.status_code == 400 and "headers" in odd_header.text
    odd_method = _preflight(client, "/threads/search", STUDIO, method="TRACE")
    assert odd_method.status_code == 400 and "method" in odd_method.text


# ---- a real browser, real cross-origin fetch() --------------------------------------------------


@pytest.fixture(scope="module")
def pages() -> Iterator[tuple[str, str]]:
    """Two tiny pages on two more loopback origins: the first one allowed, the second one not."""
    app = Starlette(routes=[Route("/", lambda request: HTMLResponse(PAGE))])
    with serve_in_thread(app) as allowed, serve_in_thread(app) as other:
        yield allowed, other


@pytest.fixture(scope="module")
def cors_mandate(stack_settings: Settings, base_url: str, pages: tuple[str, str]) -> Iterator[str]:
    """A second Mandate on the same stack (demo world seeded by ``base_url``) allowing only the first page's origin."""
    port = free_port()
    settings = DevSettings(
        env="test", port=port, data_dir=stack_settings.data_dir, database_url=stack_settings.database_url,
        fga_api_url=stack_settings.fga_api_url, seed_demo=False, cors_origins=[pages[0]],
    )
    with serve_in_thread(create_app(settings, tracer_provider=build_tracer_provider()), port=port) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with headless_chromium(tmp_path_factory.mktemp("chromium-cors")) as driver:
        yield driver


def _fetch(browser: WebDriver, page: str, url: str, init: dict[str, Any]) -> dict[str, Any]:
    """fetch() ``url`` from a page of origin ``page``, as that page's own script would."""
    if browser.current_url != f"{page}/":
        browser.get(f"{page}/")
    result = browser.execute_async_script(CALL, url, init)
    assert isinstance(result, dict), result
    return result


def _threads_marked(mandate: str, token: str, marker: str) -> list[dict[str, Any]]:
    found = httpx.post(f"{mandate}/threads/search", json={"metadata": {"marker": marker}}, headers=bearer(token), timeout=30)
    assert found.status_code == 200, found.text
    return list(found.json())


def test_cors_browser_page_of_an_allowed_origin_runs_a_graph(
    browser: WebDriver, cors_mandate: str, pages: tuple[str, str]
) -> None:
    allowed, _ = pages
    alice = login(cors_mandate, "alice")
    json_call = {"Authorization": f"Bearer {alice}", "Content-Type": "application/json"}
    created = _fetch(browser, allowed, f"{cors_mandate}/threads", {"method": "POST", "headers": json_call, "body": "{}"})
    assert created.get("status") == 200, created
    thread = json.loads(created["body"])["thread_id"]

    body = '{"assistant_id": "mandate", "stream_mode": ["values"], "input": {"messages": [{"role": "user", "content": "%s"}]}}'
    streamed = _fetch(
        browser, allowed, f"{cors_mandate}/threads/{thread}/runs/stream",
        {"method": "POST", "headers": json_call, "body": body % QUESTION},
    )
    assert streamed.get("status") == 200, streamed
    assert streamed["headers"]["content-location"].startswith(f"/threads/{thread}/runs/"), "exposed: the SDK reads it"
    assert "net 45" in streamed["body"] and "event: end" in streamed["body"]

    forged = _fetch(browser, allowed, f"{cors_mandate}/threads/search", {"method": "POST", "headers": {**json_call, "Authorization": "Bearer forged"}, "body": "{}"})
    assert forged.get("status") == 401, forged
    assert 'error="invalid_token"' in forged["headers"]["www-authenticate"], "the challenge is readable cross-origin"


def test_cors_browser_refuses_other_origins_and_the_approver_page(
    browser: WebDriver, cors_mandate: str, pages: tuple[str, str]
) -> None:
    allowed, other = pages
    alice = login(cors_mandate, "alice")
    marker = str(uuid.uuid4())
    call = {
        "method": "POST",
        "headers": {"Authorization": f"Bearer {alice}", "Content-Type": "application/json"},
        "body": '{"metadata": {"marker": "%s"}}' % marker,
    }
    refused = _fetch(browser, other, f"{cors_mandate}/threads", call)
    assert "Failed to fetch" in refused.get("error", ""), refused
    assert _threads_marked(cors_mandate, alice, marker) == [], "the preflight failed, so the browser never sent the call"
    simple = _fetch(browser, other, f"{cors_mandate}/ok", {"method": "GET"})
    assert "Failed to fetch" in simple.get("error", ""), "a call that needs no preflight is sent, but its answer stays unreadable"

    # Even the allowed origin cannot read the approver page or post to it with the user's cookies.
    page = _fetch(browser, allowed, f"{cors_mandate}/ui", {"method": "GET", "credentials": "include"})
    assert "Failed to fetch" in page.get("error", ""), page
    sign_in = _fetch(
        browser, allowed, f"{cors_mandate}/ui/sign-in",
        {"method": "POST", "credentials": "include", "headers": {"Content-Type": "application/json"}, "body": "{}"},
    )
    assert "Failed to fetch" in sign_in.get("error", ""), sign_in
    accepted = _fetch(browser, allowed, f"{cors_mandate}/threads", call)
    assert accepted.get("status") == 200, accepted
    assert len(_threads_marked(cors_mandate, alice, marker)) == 1
