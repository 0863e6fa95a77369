"""The FastAPI application: routes, the dev issuer and demo APIs when enabled, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.trace import TracerProvider
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from mandate.auth.dev_issuer import DEMO_USERS, DEV_CLI_CLIENT_ID, TOKEN_EXCHANGE_GRANT, DevClient, create_dev_issuer_app
from mandate.devstack.demo import seed_demo_world
from mandate.devstack.demo_apis import demo_api_verifiers, demo_apis_router
from mandate.api.errors import install_error_handlers
from mandate.api.limits import BodySizeLimit
from mandate.api.routes import approvals, assistants, audit, audit_page, meta, runs, threads, ui, ui_oidc
from mandate.runtime.engine import open_run_engine
from mandate.runtime.project import Project
from mandate.runtime.services import agent_clients, open_services, project_of
from mandate.runtime.settings import CORS_ANY_ORIGIN, Settings

__all__ = ["create_app"]

USER_SCOPES = ("openid", "profile", "documents:read", "tickets:write", "payments:write")
CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
CORS_REQUEST_HEADERS = ("Authorization", "Content-Type", "Accept", "Last-Event-ID", "X-Api-Key", "X-Request-Id")
"""Headers a cross-origin page may send: the bearer token, JSON bodies, and what the LangGraph SDKs and
Studio add (``Last-Event-ID`` to rejoin a stream; ``X-Api-Key``, ``X-Request-Id``, which Mandate ignores)."""
CORS_EXPOSED_HEADERS = ("Content-Location", "Location", "WWW-Authenticate", "X-Pagination-Next", "X-Pagination-Total")
"""Response headers a cross-origin page may read: run locations (the SDK reads ``Content-Location``), the
RFC 9470 step-up challenge, and paging."""
SAME_ORIGIN_ONLY = ("/ui", "/dev-idp", "/demo")
"""Paths that never answer CORS: the approver page (cookies, CSRF), the dev issuer and the demo APIs."""


class ApiCors:
    """CORS for the API, for the operator's allow-list of web origins (``MANDATE_CORS_ORIGINS``).

    Listed origins get their own origin echoed, with credentials allowed; ``*`` (refused in production)
    allows every origin without credentials, so a wildcard never comes with credentials. Paths in
    :data:`SAME_ORIGIN_ONLY` are passed through untouched: a preflight there is refused (405) and
    their answers carry no CORS header, so no other page can read them.
    """

    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        self._app = app
        wildcard = CORS_ANY_ORIGIN in origins
        self._cors = CORSMiddleware(
            app,
            allow_origins=[CORS_ANY_ORIGIN] if wildcard else origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS,
            allow_credentials=not wildcard,
            allow_private_network=True,  # Chrome's preflight from a public page (Studio) to loopback
            expose_headers=CORS_EXPOSED_HEADERS,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] != "http" or any(path == p or path.startswith(f"{p}/") for p in SAME_ORIGIN_ONLY):
            await self._app(scope, receive, send)
        else:
            await self._cors(scope, receive, send)


def _dev_clients(settings: Settings, project: Project) -> list[DevClient]:
    """The dev issuer's clients: the CLI, and each agent with the project's tool APIs as exchange audiences."""
    project_tools = project.tool_specs()
    audiences = tuple(t.audience for t in project_tools if t.audience)
    scopes = tuple(s for t in project_tools for s in t.scopes)
    agents = [
        DevClient(
            client_id=agent.client_id,
            secret=agent.client_secret.get_secret_value(),
            grant_types=("client_credentials", TOKEN_EXCHANGE_GRANT),
            scopes=tuple(dict.fromkeys(scopes)),
            exchange_audiences=tuple(dict.fromkeys(audiences)),
        )
        for agent in agent_clients(settings, project).values()
    ]
    user_scopes = tuple(dict.fromkeys((*USER_SCOPES, *scopes)))
    return [DevClient(client_id=DEV_CLI_CLIENT_ID, secret=None, grant_types=("password",), scopes=user_scopes), *agents]


def create_app(settings: Settings, *, tracer_provider: TracerProvider) -> FastAPI:
    """Build the service. ``settings`` must be resolved (database and OpenFGA URLs set).

    Raises:
        ConfigurationError: Production mode with dev-only values or missing secrets.
        ProjectError: The project (``settings.project``) is wrong; the message names file, key and fix.
    """
    settings.check_production_ready()
    project = project_of(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings, tracer_provider=tracer_provider, project=project) as services:
            app.state.services = services
            if settings.dev_issuer:
                app.state.demo_api_verifiers = demo_api_verifiers(services)
                if settings.seed_demo:  # before the engine: its workers may take over runs at once
                    await seed_demo_world(authz=services.authz, ingestor=services.ingestor)
            async with open_run_engine(services) as engine:
                app.state.runs = engine.runs
                app.state.worker = engine.worker
                yield

    app = FastAPI(title="Mandate", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit)
    if settings.cors_origins:
        app.add_middleware(ApiCors, origins=settings.cors_origins)  # outermost: preflights skip the rest
    app.include_router(meta.router)
    app.include_router(threads.router)
    app.include_router(runs.router)
    app.include_router(assistants.router)
    app.include_router(approvals.router)
    app.include_router(audit.router)
    app.include_router(ui.router)
    app.include_router(ui_oidc.router)
    app.include_router(audit_page.router)
    if settings.dev_issuer:
        dev_issuer = create_dev_issuer_app(
            env=settings.env,
            issuer_url=settings.dev_issuer_url,
            audience=settings.audience,
            key_path=settings.data_dir / "dev-issuer-key.json",
            users=DEMO_USERS,
            clients=_dev_clients(settings, project),
        )
        install_error_handlers(dev_issuer)  # its unknown paths answer Mandate's JSON error too
        app.mount("/dev-idp", dev_issuer)
        app.include_router(demo_apis_router())
    return app
