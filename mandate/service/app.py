"""The FastAPI application: routes, the dev issuer and demo APIs when enabled, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.trace import TracerProvider

from mandate.auth.dev_issuer import DEMO_USERS, DEV_CLI_CLIENT_ID, TOKEN_EXCHANGE_GRANT, DevClient, create_dev_issuer_app
from mandate.service.demo_apis import demo_apis_router
from mandate.service.errors import install_error_handlers
from mandate.service.limits import BodySizeLimit
from mandate.service.routes import approvals, assistants, audit, meta, runs, threads, ui
from mandate.service.runs import RunManager
from mandate.service.runtime import open_services
from mandate.service.settings import Settings

__all__ = ["create_app"]

USER_SCOPES = ("openid", "profile", "documents:read", "tickets:write", "payments:write")


def _dev_clients(settings: Settings) -> list[DevClient]:
    agents = [
        DevClient(
            client_id=agent.client_id,
            secret=agent.client_secret.get_secret_value(),
            grant_types=("client_credentials", TOKEN_EXCHANGE_GRANT),
            scopes=("tickets:write", "payments:write"),
            exchange_audiences=(settings.tickets_api_url, settings.payments_api_url),
        )
        for agent in settings.agents.values()
    ]
    return [DevClient(client_id=DEV_CLI_CLIENT_ID, secret=None, grant_types=("password",), scopes=USER_SCOPES), *agents]


def create_app(settings: Settings, *, tracer_provider: TracerProvider) -> FastAPI:
    """Build the service. ``settings`` must be resolved (database and OpenFGA URLs set).

    Raises:
        ConfigurationError: Production mode with dev-only values or missing secrets.
    """
    settings.check_production_ready()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings, tracer_provider=tracer_provider) as services:
            app.state.services = services
            app.state.runs = RunManager(services)
            yield

    app = FastAPI(title="Mandate", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit)
    app.include_router(meta.router)
    app.include_router(threads.router)
    app.include_router(runs.router)
    app.include_router(assistants.router)
    app.include_router(approvals.router)
    app.include_router(audit.router)
    app.include_router(ui.router)
    if settings.dev_issuer:
        app.mount(
            "/dev-idp",
            create_dev_issuer_app(
                env=settings.env,
                issuer_url=settings.dev_issuer_url,
                audience=settings.audience,
                key_path=settings.data_dir / "dev-issuer-key.json",
                users=DEMO_USERS,
                clients=_dev_clients(settings),
            ),
        )
        app.include_router(demo_apis_router())
    return app
