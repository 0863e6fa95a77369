"""Building the services once per process, from resolved settings, and closing them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph.state import CompiledStateGraph
from openfga_sdk import OpenFgaClient
from opentelemetry import trace
from opentelemetry.trace import TracerProvider

from mandate import audit, auth, retrieval
from mandate._db import Pool, apply_migrations, open_pool
from mandate.audit import TRACER_NAME, AuditLog, Pseudonymizer
from mandate.auth import vocabulary
from mandate.auth import (
    Relationship,
    OpenFgaAuthorizer,
    TokenBroker,
    TokenVaultStore,
    TokenVerifier,
    TrustedIssuer,
    ensure_store_and_model,
    open_fga_client,
)
from mandate.graphs import BUILT_IN_PROJECT
from mandate.nodes import LlmPlanner, LlmResponder, OfflinePlanner, OfflineResponder
from mandate.contract.state import Planner, Responder
from mandate.retrieval import AuthorizedRetriever, Ingestor, OpenFgaDirectory, build_embeddings
from mandate.runtime import queries, sessions
from mandate.runtime.ledger import CallLedgerStore
from mandate.runtime.signing import audit_signer
from mandate.runtime.sessions import SessionStore
from mandate.runtime.project import Project, load_project
from mandate.runtime.project_auth import ProjectAuth
from mandate.runtime.settings import DEV_SECRET_PLACEHOLDER, AgentClientSettings, ConfigurationError, Settings
from mandate.runtime.threads import ThreadStore
from mandate.tools import ToolRegistry

__all__ = ["MODEL_PATH", "Services", "agent_clients", "graph_of", "open_authorizer", "open_services", "project_of", "trusted_issuers"]

MODEL_PATH = Path(__file__).resolve().parent.parent / "auth" / "model.fga"


@dataclass(frozen=True, kw_only=True, slots=True)
class Services:
    """Everything a request needs, built once in the lifespan and injected by ``deps``."""

    settings: Settings
    pool: Pool
    graphs: dict[str, CompiledStateGraph]
    """The project's compiled graphs by graph id; the first is the default of a thread's first run."""
    graph_descriptions: dict[str, str]
    """What the project says each graph does (its system assistant's description)."""
    checkpointer: AsyncPostgresSaver
    """Where every graph keeps its checkpoints."""
    verifier: TokenVerifier
    authz: OpenFgaAuthorizer
    retriever: AuthorizedRetriever
    ingestor: Ingestor
    tools: ToolRegistry
    brokers: dict[str, TokenBroker]
    """Token brokers by OpenFGA agent id (``agent:executor``): each agent exchanges as its own client."""
    vault: TokenVaultStore
    ledger: CallLedgerStore
    """The call ledger: the gate's authority, and the approval queue over the same rows."""
    http: httpx.AsyncClient
    audit: AuditLog
    planner: Planner
    responder: Responder
    pseudonymize: Pseudonymizer
    tracer: trace.Tracer
    threads: ThreadStore
    sessions: SessionStore
    """The approver page's sessions and the operator's revocation check."""
    project_auth: ProjectAuth | None = None
    """The served project's own auth handlers, consulted after Mandate's checks (narrow only)."""

    @property
    def default_graph(self) -> str:
        """The graph a thread's first run takes when it names none: the project's first."""
        return next(iter(self.graphs))


def graph_of(services: Services, thread: dict[str, Any]) -> CompiledStateGraph:
    """The graph a thread runs (the project's first graph until its first run)."""
    return services.graphs[thread.get("assistant_id") or services.default_graph]


def trusted_issuers(settings: Settings) -> list[TrustedIssuer]:
    """The allow-listed issuers of ``settings``, as the verifier takes them."""
    return [
        TrustedIssuer(
            issuer=i.issuer, key=i.id, tenants=frozenset(i.tenants), algorithms=tuple(i.algorithms),
            require_at_jwt=i.require_at_jwt, tenant_claim=i.tenant_claim,
            client_ids=frozenset(i.client_ids), typ_claim=i.typ_claim, required_scopes=frozenset(i.required_scopes),
            jwks_min_lifetime=i.jwks_min_lifetime_seconds, jwks_max_lifetime=i.jwks_max_lifetime_seconds,
        )
        for i in settings.oidc_issuers
    ]


def _models(settings: Settings) -> tuple[Planner, Responder]:
    if not settings.llm_base_url:
        return OfflinePlanner(), OfflineResponder()
    from langchain_openai import ChatOpenAI  # only with a model configured: it costs a second at every start

    chat = ChatOpenAI(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key,
        model=settings.llm_model,
        temperature=0,
        max_retries=1,
        timeout=60,
    )
    return LlmPlanner(chat), LlmResponder(chat)


def project_of(settings: Settings) -> Project:
    """The project ``settings`` serve (``MANDATE_PROJECT``, else the built-in graphs), loaded and checked."""
    resolved = {
        "MANDATE_PUBLIC_URL": settings.public_url,
        "MANDATE_TICKETS_API_URL": settings.tickets_api_url,
        "MANDATE_PAYMENTS_API_URL": settings.payments_api_url,
    }
    return load_project(settings.project or BUILT_IN_PROJECT, settings=resolved)


def agent_clients(settings: Settings, project: Project) -> dict[str, AgentClientSettings]:
    """Every agent's OAuth client: the configured ones and the project's.

    Raises:
        ConfigurationError: A project agent shares a configured agent's name, or has no secret in production.
    """
    clients = dict(settings.agents)
    for name, client in project.agent_clients().items():
        if name in clients:
            raise ConfigurationError(f"mandate.yaml: agents.{name}: the name is taken by MANDATE_AGENTS. Fix: rename the agent.")
        if settings.env == "prod" and client.client_secret.get_secret_value() == DEV_SECRET_PLACEHOLDER:
            raise ConfigurationError(f"mandate.yaml: agents.{name}: no client secret. Fix: set client_secret_env and that variable.")
        clients[name] = client
    return clients


@asynccontextmanager
async def open_authorizer(settings: Settings, *, tracer: trace.Tracer) -> AsyncIterator[tuple[OpenFgaAuthorizer, OpenFgaClient]]:
    """The authorizer over ``settings``' OpenFGA store and model (created or brought up to date
    first), and its client for the directory; the client is closed on exit."""
    api_token = settings.fga_api_token.get_secret_value() if settings.fga_api_token else None
    store_id, model_id = await ensure_store_and_model(
        api_url=settings.fga_api_url, store_name=settings.fga_store_name, model_path=MODEL_PATH,
        store_id=settings.fga_store_id, model_id=settings.fga_model_id, api_token=api_token,
    )
    client = open_fga_client(api_url=settings.fga_api_url, store_id=store_id, model_id=model_id, api_token=api_token)
    try:
        yield OpenFgaAuthorizer(client=client, model_id=model_id, tracer=tracer), client
    finally:
        await client.close()


@asynccontextmanager
async def open_services(
    settings: Settings, *, tracer_provider: TracerProvider, project: Project | None = None
) -> AsyncIterator[Services]:
    """Open pools and clients, apply migrations, write the project's grants; close all on exit.

    ``settings.database_url`` and ``settings.fga_api_url`` must be resolved (the dev stack does
    that for the embedded defaults).
    """
    tracer = tracer_provider.get_tracer(TRACER_NAME)
    project = project or project_of(settings)
    agents = agent_clients(settings, project)
    async with AsyncExitStack() as stack:  # closes in reverse: the audit log, OpenFGA, HTTP, the pool
        pool = await open_pool(settings.database_url)
        stack.push_async_callback(pool.close)
        http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        stack.push_async_callback(http.aclose)
        for room, migrations in (
            ("auth", auth.MIGRATIONS),
            ("retrieval", retrieval.MIGRATIONS),
            ("audit", audit.MIGRATIONS),
            ("service", queries.MIGRATIONS),
            ("sessions", sessions.MIGRATIONS),
        ):
            await apply_migrations(pool, room=room, migrations=migrations)
        # No reset of runs or threads here: any number of processes open these services over one
        # database; a run whose replica died is taken over by a worker once its lease expired.
        checkpointer = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await checkpointer.setup()
        authz, fga = await stack.enter_async_context(open_authorizer(settings, tracer=tracer))
        embeddings = build_embeddings(
            settings.embeddings_provider,
            model=settings.embeddings_model,
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key.get_secret_value(),
        )
        directory = OpenFgaDirectory(client=fga)
        issuers = trusted_issuers(settings)
        planner, responder = _models(settings)
        tools = ToolRegistry(project.tool_specs())
        vault = TokenVaultStore(pool=pool, secret=settings.vault_key.get_secret_value().encode())
        audit_log = AuditLog(pool=pool, signer=audit_signer(settings))
        stack.push_async_callback(audit_log.close)  # writes the counts of coalesced denials still open
        services = Services(
            settings=settings,
            pool=pool,
            graphs=await project.compiled(checkpointer),
            graph_descriptions=dict(project.descriptions),
            checkpointer=checkpointer,
            verifier=TokenVerifier(issuers=issuers, audience=settings.audience, http=http),
            authz=authz,
            retriever=AuthorizedRetriever(
                pool=pool, authz=authz, embeddings=embeddings, tracer=tracer, directory=directory
            ),
            ingestor=Ingestor(pool=pool, authz=authz, embeddings=embeddings, directory=directory),
            tools=tools,
            brokers={
                vocabulary.agent(name): TokenBroker(
                    token_endpoint=settings.token_endpoint,
                    client_id=agent.client_id,
                    client_secret=agent.client_secret.get_secret_value(),
                    tracer=tracer,
                )
                for name, agent in agents.items()
            },
            vault=vault,
            ledger=CallLedgerStore(pool=pool, tools=tools, audit=audit_log),
            http=http,
            audit=audit_log,
            planner=planner,
            responder=responder,
            pseudonymize=Pseudonymizer(settings.pseudonym_key.get_secret_value().encode()),
            tracer=tracer,
            threads=ThreadStore(pool=pool, max_per_user=settings.max_threads_per_user),
            sessions=SessionStore(pool=pool, vault=vault),
            project_auth=project.auth,
        )
        grants = [Relationship(vocabulary.agent(agent), vocabulary.INVOKER, vocabulary.tool(tool)) for agent, tool in project.invoker_grants()]
        if settings.seed_demo and settings.dev_issuer:
            grants += project.dev_grants()
        if grants:
            await authz.write(writes=grants)
        yield services
