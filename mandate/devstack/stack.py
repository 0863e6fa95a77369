"""The embedded dev stack: starts whatever the settings leave unset (Postgres, OpenFGA), and Jaeger or Keycloak if asked.

Used by ``mandate dev`` and by the test fixtures, so both run the same real components; operator
commands in dev mode (``mandate --dev audit …``) attach to it with :func:`attach_embedded`. With
``idp=keycloak`` (``MANDATE_IDP=keycloak make dev``) the stack also runs the embedded Keycloak, and
the settings it returns trust Keycloak instead of the dev issuer; the default never installs,
downloads or starts Keycloak.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from mandate.devstack._process import free_port
from mandate.devstack.jaeger import EmbeddedJaeger, ensure_jaeger_binary
from mandate.devstack.openfga import LOOPBACK, EmbeddedOpenFGA, ensure_openfga_binary
from mandate.devstack.postgres import EmbeddedPostgres
from mandate.runtime.settings import Settings

if TYPE_CHECKING:
    from mandate.devstack.keycloak import EmbeddedKeycloak

__all__ = ["APP_DATABASE", "FGA_DATABASE", "DevStack", "attach_embedded"]

APP_DATABASE = "mandate"
"""Database of Mandate's own tables in the embedded Postgres."""
FGA_DATABASE = "openfga"
"""Database of OpenFGA's datastore in the embedded Postgres."""
KEYCLOAK_DIR = "keycloak"
"""Keycloak's run directory under ``data_dir`` (its database and log)."""
PROBE_TIMEOUT_S = 2.0
"""How long :func:`attach_embedded` waits for a running OpenFGA to answer ``/healthz``."""


class DevStack:
    """Embedded Postgres 18 + pgvector, the real OpenFGA server and, if asked, Keycloak, under ``settings.data_dir``."""

    def __init__(
        self, settings: Settings, *, fga_grpc_port: int | None = None, keycloak_management_port: int | None = None
    ) -> None:
        self._settings = settings
        self._grpc_port = fga_grpc_port or settings.fga_port + 1
        self._keycloak_management_port = keycloak_management_port or settings.keycloak_port + 1
        self._postgres: EmbeddedPostgres | None = None
        self._openfga: EmbeddedOpenFGA | None = None
        self._jaeger: EmbeddedJaeger | None = None
        self._keycloak: EmbeddedKeycloak | None = None

    @property
    def otlp_traces_endpoint(self) -> str | None:
        """Where spans go when the stack runs Jaeger (``MANDATE_TRACES=jaeger``), else ``None``."""
        return self._jaeger.otlp_traces_endpoint if self._jaeger is not None else None

    @property
    def keycloak(self) -> EmbeddedKeycloak | None:
        """The Keycloak this stack runs (``idp=keycloak``), else ``None``."""
        return self._keycloak

    def start(self) -> Settings:
        """Start the missing components (idempotent) and return settings that point at them.

        If any component fails to start, the ones already started are stopped again.
        """
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Settings:
        settings = self._settings
        data_dir = Path(settings.data_dir).absolute()
        data_dir.mkdir(parents=True, exist_ok=True)
        update: dict[str, str] = {}
        if not settings.database_url or not settings.fga_api_url:
            self._postgres = EmbeddedPostgres(data_dir)
            self._postgres.start()
        if not settings.database_url:
            assert self._postgres is not None
            update["database_url"] = self._postgres.ensure_database(APP_DATABASE)
        if not settings.fga_api_url:
            assert self._postgres is not None
            self._openfga = _openfga(settings, self._postgres, grpc_port=self._grpc_port)
            update["fga_api_url"] = self._openfga.start()
        if settings.traces == "jaeger":
            self._jaeger = _jaeger(settings)
            query_url = self._jaeger.start()
            update["trace_link"] = settings.trace_link or f"{query_url}/api/traces/{{trace_id}}"
        resolved = settings.model_copy(update=update)
        if settings.idp == "keycloak":
            resolved = self._start_keycloak(resolved, data_dir / KEYCLOAK_DIR)
        return resolved

    def _start_keycloak(self, settings: Settings, run_dir: Path) -> Settings:
        """Start Keycloak with the demo realm fitted to ``settings``; return settings that trust it.

        Its database is made afresh at every start (from the install's template and the realm
        file), so the realm always carries these settings' URLs and client secrets. The demo
        world's grants are written for its users (``user:kc|<uuid>``) when the demo is seeded.
        """
        # Imported here: Keycloak's wiring loads the auth room, which the default stack never needs.
        from mandate.devstack.keycloak import dev_keycloak, ensure_keycloak, find_java_home, trust_keycloak

        shutil.rmtree(run_dir / "data", ignore_errors=True)
        self._keycloak = dev_keycloak(
            settings,
            home=ensure_keycloak(settings.tools_dir),
            java_home=find_java_home(),
            run_dir=run_dir,
            http_port=settings.keycloak_port,
            management_port=self._keycloak_management_port,
        )
        self._keycloak.start()
        trusting = settings.model_copy(update=trust_keycloak(settings, self._keycloak))
        if settings.seed_demo:
            asyncio.run(_grant_keycloak_users(trusting))
        return trusting

    @property
    def postgres(self) -> EmbeddedPostgres | None:
        """The embedded Postgres this stack started, if any (the failure drills restart it)."""
        return self._postgres

    @property
    def openfga(self) -> EmbeddedOpenFGA | None:
        """The embedded OpenFGA this stack started, if any (the failure drills stop and restart it)."""
        return self._openfga

    def stop(self) -> None:
        """Stop what :meth:`start` started (safe to call twice)."""
        if self._jaeger is not None:
            self._jaeger.stop()
        if self._keycloak is not None:
            self._keycloak.stop()
        if self._openfga is not None:
            self._openfga.stop()
        if self._postgres is not None:
            self._postgres.stop()


@contextmanager
def attach_embedded(settings: Settings, *, openfga: bool = False) -> Iterator[Settings]:
    """Settings whose unset database (and OpenFGA, if asked) are those of the embedded stack.

    The stack is the one under ``settings.data_dir``: servers that ``mandate dev`` runs are used as
    they are; one that is not running is started for the block and stopped after it. A server this
    function did not start is never stopped. Configured URLs are kept.

    Args:
        settings: Dev-mode settings (their ``data_dir``, ``tools_dir`` and ``fga_port``).
        openfga: Whether the command needs OpenFGA too.

    Yields:
        ``settings`` with ``database_url`` (and ``fga_api_url``) filled in.

    Raises:
        RuntimeError: OpenFGA had to be started and could not be (the message says why).
    """
    update: dict[str, str] = {}
    postgres: EmbeddedPostgres | None = None
    stop_postgres = False
    fga: EmbeddedOpenFGA | None = None

    def embedded_postgres() -> EmbeddedPostgres:
        nonlocal postgres, stop_postgres
        if postgres is None:
            postgres = EmbeddedPostgres(Path(settings.data_dir).absolute())
            stop_postgres = postgres.pid is None  # ours to stop only if nobody ran it before
            postgres.start()
        return postgres

    try:
        if not settings.database_url:
            update["database_url"] = embedded_postgres().ensure_database(APP_DATABASE)
        if openfga and not settings.fga_api_url:
            running = f"http://{LOOPBACK}:{settings.fga_port}"
            if _serving(running):
                update["fga_api_url"] = running
            else:
                fga = _openfga(settings, embedded_postgres(), grpc_port=settings.fga_port + 1)
                update["fga_api_url"] = fga.start()
        yield settings.model_copy(update=update)
    finally:
        if fga is not None:
            fga.stop()
        if postgres is not None and stop_postgres:
            postgres.stop()


def _openfga(settings: Settings, postgres: EmbeddedPostgres, *, grpc_port: int) -> EmbeddedOpenFGA:
    data_dir = Path(settings.data_dir).absolute()
    return EmbeddedOpenFGA(
        binary=ensure_openfga_binary(settings.tools_dir),
        datastore_uri=postgres.ensure_database(FGA_DATABASE),
        http_port=settings.fga_port,
        grpc_port=grpc_port,
        log_path=data_dir / "openfga.log",
    )


def _jaeger(settings: Settings) -> EmbeddedJaeger:
    return EmbeddedJaeger(
        binary=ensure_jaeger_binary(settings.tools_dir),
        otlp_port=settings.jaeger_otlp_port,
        query_port=settings.jaeger_port,
        query_grpc_port=free_port(),
        health_port=free_port(),
        run_dir=Path(settings.data_dir).absolute() / "jaeger",
    )


async def _grant_keycloak_users(settings: Settings) -> None:
    """Write the demo world's user grants for the Keycloak users (idempotent), in the app's store."""
    from opentelemetry import trace

    from mandate.devstack.keycloak import KEYCLOAK_ISSUER_KEY, demo_relationships
    from mandate.runtime.services import open_authorizer

    async with open_authorizer(settings, tracer=trace.get_tracer(__name__)) as (authz, _):
        await authz.write(writes=demo_relationships(KEYCLOAK_ISSUER_KEY))


def _serving(api_url: str) -> bool:
    """Whether an OpenFGA server answers ``SERVING`` at ``api_url``."""
    try:
        response = httpx.get(f"{api_url}/healthz", timeout=PROBE_TIMEOUT_S)
        return response.status_code == 200 and response.json().get("status") == "SERVING"
    except (httpx.HTTPError, ValueError):
        return False
