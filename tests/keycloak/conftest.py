"""Session fixtures: a real Keycloak (started once), and Mandate trusting it, on the session's Postgres and OpenFGA.

Keycloak is started by the dev stack exactly as ``MANDATE_IDP=keycloak mandate dev`` starts it: from
``.tools/keycloak-<version>`` (installed on first use, the archive cached in ``~/.cache/mandate``),
importing ``infra/keycloak/mandate-realm.json`` with this session's URLs and fresh client secrets,
serving the demo users. Mandate runs as in the other end-to-end tests (``DevSettings``: demo world,
demo APIs) but trusts Keycloak only, in a database and OpenFGA store of its own; its agents exchange
tokens at Keycloak and the approver page signs in there. The stack writes the demo grants for the
Keycloak users (``user:kc|<uuid>``) with the real authorizer.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate.audit import build_tracer_provider
from mandate.runtime.settings import DevSettings, Settings
from mandate.api.app import create_app
from mandate.devstack.keycloak import KEYCLOAK_VERSION, EmbeddedKeycloak, demo_subject
from mandate.devstack.postgres import EmbeddedPostgres
from mandate.devstack.stack import DevStack
from mandate.runtime.settings import AgentClientSettings
from tests.keycloak.helpers import browser_login
from tests.utils.servers import free_port, serve_in_thread

DATABASE = "mandate_keycloak"
FGA_STORE = "mandate-keycloak"


@pytest.fixture(scope="session")
def kc_base_settings(stack_settings: Settings) -> Iterator[Settings]:
    """Mandate's own settings before it trusts Keycloak: dev mode and demo world, its own database and store.

    Client secrets are fresh for the session; Keycloak's realm gets the same ones.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="mandate-kc-app-"))
    database_url = EmbeddedPostgres(Path(stack_settings.data_dir)).ensure_database(DATABASE)  # the session's server
    settings = DevSettings(
        env="test",
        port=free_port(),
        data_dir=data_dir,
        tools_dir=Path(".tools").absolute(),
        database_url=database_url,
        fga_api_url=stack_settings.fga_api_url,
        fga_store_name=FGA_STORE,
        agents={
            "executor": AgentClientSettings(client_id="agent-executor", client_secret=secrets.token_urlsafe(24)),
            "operations": AgentClientSettings(client_id="agent-operations", client_secret=secrets.token_urlsafe(24)),
        },
        ui_client_secret=secrets.token_urlsafe(24),
    )
    try:
        yield settings
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _report(request: pytest.FixtureRequest, line: str) -> None:
    """Print a figure on the terminal, past output capturing (tests print timings, never assert them)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n{line}")


@pytest.fixture(scope="session")
def kc_stack(kc_base_settings: Settings, request: pytest.FixtureRequest) -> Iterator[tuple[DevStack, Settings]]:
    """The dev stack with ``idp=keycloak``, as ``MANDATE_IDP=keycloak mandate dev`` runs it, on free ports.

    Postgres and OpenFGA are the session's (set in the settings), so the stack starts Keycloak only
    (installed on first use), fits the demo realm to Mandate's settings, grants the demo world to
    its users and returns settings that trust it.
    """
    stack = DevStack(
        kc_base_settings.model_copy(update={"idp": "keycloak", "keycloak_port": free_port()}),
        keycloak_management_port=free_port(),
    )
    try:
        trusting = stack.start()
        assert stack.keycloak is not None
        server = stack.keycloak
        _report(request, f"Keycloak {KEYCLOAK_VERSION} ready in {server.started_in:.1f} s at {server.base_url}")
        yield stack, trusting
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def keycloak(kc_stack: tuple[DevStack, Settings]) -> EmbeddedKeycloak:
    """Keycloak with the demo realm fitted to Mandate's settings, on loopback, for the whole session."""
    server = kc_stack[0].keycloak
    assert server is not None
    return server


@pytest.fixture(scope="session")
def kc_settings(kc_stack: tuple[DevStack, Settings]) -> Settings:
    """Mandate's settings trusting Keycloak only: its issuer, its token endpoint, the page's client."""
    return kc_stack[1]


@pytest.fixture(scope="session")
def kc_spans() -> InMemorySpanExporter:
    """Every span the Keycloak-trusting app exports."""
    return InMemorySpanExporter()


@pytest.fixture(scope="session")
def kc_base_url(kc_settings: Settings, kc_spans: InMemorySpanExporter) -> Iterator[str]:
    """Mandate trusting Keycloak, over real HTTP (the stack wrote the demo grants for the Keycloak users)."""
    app = create_app(kc_settings, tracer_provider=build_tracer_provider(kc_spans))
    with serve_in_thread(app, port=kc_settings.port) as url:
        yield url


@pytest.fixture(scope="session")
def kc_token(keycloak: EmbeddedKeycloak, kc_base_url: str) -> Callable[..., str]:
    """``kc_token("alice")``: an access token from Keycloak's login pages; ``otp=…`` signs in with MFA."""

    def login(user: str, *, otp: str | bool | None = None, **options: object) -> str:
        return str(browser_login(keycloak.issuer, user, otp=bool(otp), **options)["access_token"])  # type: ignore[arg-type]

    return login


@pytest.fixture()
def kc_client(kc_base_url: str) -> Iterator[httpx.Client]:
    """A plain HTTP client for the Keycloak-trusting app."""
    with httpx.Client(base_url=kc_base_url, timeout=120) as http:
        yield http


@pytest.fixture()
def kc_db(kc_settings: Settings) -> Iterator[psycopg.Connection]:
    """A direct connection to that app's database."""
    with psycopg.connect(kc_settings.database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def sub() -> Callable[[str], str]:
    """``sub("alice")``: the demo user's subject at Keycloak (a fixed UUID of the realm file)."""
    return demo_subject
