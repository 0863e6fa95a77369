"""Session fixtures: the real embedded stack (Postgres, OpenFGA, Jaeger on demand), the app over real HTTP, tokens."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate.audit import build_tracer_provider
from mandate.devstack.jaeger import EmbeddedJaeger, ensure_jaeger_binary
from mandate.devstack.stack import DevStack
from mandate.runtime.settings import DevSettings, Settings
from mandate.api.app import create_app
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.tokens import login

pytest_plugins = ["tests.utils.file_times"]


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """Settings of a running embedded stack (real Postgres 18 + pgvector, real OpenFGA)."""
    # Not under pytest's tmp root: pytest makes that 0700 at every start, which would lock the
    # Postgres server (running as its own system user) out of a data directory still in use.
    data_dir = Path(tempfile.mkdtemp(prefix="mandate-test-"))
    settings = DevSettings(
        env="test",
        port=free_port(),
        data_dir=data_dir,
        tools_dir=Path(".tools").absolute(),
        fga_port=free_port(),
    )
    stack = DevStack(settings, fga_grpc_port=free_port())
    try:
        yield stack.start()
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def jaeger() -> Iterator[EmbeddedJaeger]:
    """A real Jaeger (in-memory storage) receiving OTLP/HTTP and answering its query API, on free loopback ports."""
    run_dir = Path(tempfile.mkdtemp(prefix="mandate-jaeger-"))
    server = EmbeddedJaeger(
        binary=ensure_jaeger_binary(Path(".tools")),
        otlp_port=free_port(),
        query_port=free_port(),
        query_grpc_port=free_port(),
        health_port=free_port(),
        run_dir=run_dir,
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """Every span the app under test exports."""
    return InMemorySpanExporter()


@pytest.fixture(scope="session")
def base_url(stack_settings: Settings, spans: InMemorySpanExporter) -> Iterator[str]:
    """Mandate, with its dev issuer and demo APIs, served over real HTTP on loopback."""
    app = create_app(stack_settings, tracer_provider=build_tracer_provider(spans))
    with serve_in_thread(app, port=stack_settings.port) as url:
        yield url


@pytest.fixture(scope="session")
def token(base_url: str) -> Callable[..., str]:
    """``token("alice")``: a real access token from the dev issuer."""
    return lambda user, **kw: login(base_url, user, **kw)


@pytest.fixture()
def client(base_url: str) -> Iterator[httpx.Client]:
    """A plain HTTP client for the app."""
    with httpx.Client(base_url=base_url, timeout=60) as http:
        yield http


@pytest.fixture()
def db(stack_settings: Settings) -> Iterator[psycopg.Connection]:
    """A direct connection to the app's database, for assertions on what was stored."""
    with psycopg.connect(stack_settings.database_url, autocommit=True) as conn:
        yield conn
