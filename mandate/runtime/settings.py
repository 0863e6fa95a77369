"""The one settings object: every knob is an environment variable ``MANDATE_*``.

Built once by ``service/`` at startup; rooms receive plain values as constructor
arguments and never read the environment themselves.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mandate.errors import AppError

__all__ = ["AgentClientSettings", "ConfigurationError", "DevSettings", "IssuerSettings", "Settings"]

DEV_SECRET_PLACEHOLDER = "dev-only-change-me"
"""Default for every secret; accepted only when ``env`` is ``dev`` or ``test``."""
DEV_ISSUER_KEY = "dev"
"""The dev issuer's key in OpenFGA user ids (``user:dev|alice``)."""
DEV_ISSUER_TENANTS = ("acme", "globex")
"""The tenants the dev issuer may assert: those of the demo world."""
STUDIO_ORIGIN = "https://smith.langchain.com"
"""LangGraph Studio's web origin (EU region: ``https://eu.smith.langchain.com``), allowed by ``mandate dev``."""
CORS_ANY_ORIGIN = "*"
"""In ``cors_origins``: any web page may call the API, without credentials (dev/test only)."""
_ORIGIN = re.compile(r"^https?://[a-z0-9.\-]+(:[0-9]{1,5})?$|^https?://\[[0-9a-f:.]+\](:[0-9]{1,5})?$")


class ConfigurationError(AppError):
    """Raised when the service is asked to start with a configuration it must refuse."""

    code = "configuration_error"


class IssuerSettings(BaseModel):
    """One trusted token issuer (an entry of ``MANDATE_OIDC_ISSUERS``)."""

    issuer: str
    """Exact ``iss`` value; its discovery document is ``<issuer>/.well-known/openid-configuration``."""
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    """Short key qualifying this issuer's users in OpenFGA (``user:<id>|<sub>``); never reuse one."""
    tenants: list[str] = Field(min_length=1)
    """Tenants this issuer may assert; a token naming another tenant is refused."""
    algorithms: list[str] = Field(default_factory=lambda: ["RS256"])
    """Signature algorithms pinned for this issuer (asymmetric only)."""
    require_at_jwt: bool = True
    """Whether access tokens must carry ``typ: at+jwt`` (RFC 9068); Auth0 and Keycloak differ."""
    tenant_claim: str = "tenant"
    """Claim holding the tenant id (for example ``https://example.com/tenant`` on Auth0)."""
    client_ids: list[str] = Field(default_factory=list)
    """Clients whose tokens are accepted (``client_id``, else ``azp``); empty accepts any client."""
    typ_claim: str | None = None
    """Value the ``typ`` claim must have (Keycloak: ``Bearer``, its ID tokens say ``ID``); unset skips it."""
    required_scopes: list[str] = Field(default_factory=list)
    """Scopes every accepted token must carry; ID tokens carry none (useful for Entra and Auth0)."""
    jwks_min_lifetime_seconds: float = Field(default=60.0, ge=1)
    """Shortest time a fetched key set is kept, whatever its ``Cache-Control: max-age`` says."""
    jwks_max_lifetime_seconds: float = Field(default=3600.0, ge=1)
    """Longest time a fetched key set is kept: a key removed at the issuer is trusted at most this long."""

    @model_validator(mode="after")
    def _check_token_rules(self) -> IssuerSettings:
        if self.jwks_min_lifetime_seconds > self.jwks_max_lifetime_seconds:
            raise ValueError("jwks_min_lifetime_seconds must not exceed jwks_max_lifetime_seconds")
        if not self.require_at_jwt and not (self.client_ids or self.typ_claim or self.required_scopes):
            # Without typ at+jwt, an ID token for a client whose id is our audience would pass.
            raise ValueError(
                f"issuer {self.issuer!r}: without require_at_jwt, set client_ids, typ_claim or "
                "required_scopes so that ID tokens can be told from access tokens"
            )
        return self


class AgentClientSettings(BaseModel):
    """The OAuth client an agent authenticates as when it exchanges a user's token (the ``act`` subject)."""

    client_id: str
    client_secret: SecretStr = SecretStr(DEV_SECRET_PLACEHOLDER)


def _default_agents() -> dict[str, AgentClientSettings]:
    return {
        "executor": AgentClientSettings(client_id="agent-executor"),
        "operations": AgentClientSettings(client_id="agent-operations"),
    }


class Settings(BaseSettings):
    """Mandate's configuration. See the README for the table of variables."""

    model_config = SettingsConfigDict(env_prefix="MANDATE_", env_nested_delimiter="__", extra="ignore")

    env: Literal["dev", "test", "prod"] = "prod"
    """``prod`` unless told otherwise: dev behaviour only through ``mandate dev`` or ``MANDATE_ENV=dev``."""
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = ""
    """Base URL clients use to reach the service; defaults to ``http://<host>:<port>``."""
    data_dir: Path = Path(".data")
    """Where the embedded Postgres, OpenFGA and dev issuer keep their state."""
    tools_dir: Path = Path(".tools")
    """Where the OpenFGA binary is installed (``<tools_dir>/bin/openfga``)."""

    database_url: str = ""
    """Postgres DSN; empty starts the embedded Postgres 18 + pgvector under ``data_dir``."""

    fga_api_url: str = ""
    """OpenFGA HTTP API; empty starts the embedded OpenFGA server on ``fga_port``."""
    fga_port: int = 8080
    fga_store_id: str = ""
    """Store to use; empty finds or creates the store named ``fga_store_name``."""
    fga_store_name: str = "mandate"
    fga_model_id: str = ""
    """Authorization model id; empty writes ``auth/model.fga`` if it changed and uses the latest."""
    fga_api_token: SecretStr | None = None

    idp: Literal["dev", "keycloak"] = "dev"
    """The issuer the dev stack (``mandate dev``) runs: ``dev`` (the built-in dev issuer) or ``keycloak``
    (the embedded Keycloak on ``keycloak_port``, trusted instead of the dev issuer). Not used by ``serve``."""
    keycloak_port: int = 8180
    """Loopback port of the embedded Keycloak (``idp=keycloak``); its management port is the next one."""

    audience: str = ""
    """The audience access tokens must name; defaults to ``public_url``."""
    oidc_issuers: list[IssuerSettings] = Field(default_factory=list)
    """Trusted issuers (JSON). Required in prod; in dev/test empty trusts only the dev issuer."""
    dev_issuer: bool = False
    """Serve the dev OIDC issuer under ``/dev-idp`` (refused unless ``env`` is dev or test)."""

    token_endpoint: str = ""
    """Where agents exchange tokens (RFC 8693); defaults to the dev issuer's token endpoint."""
    agents: dict[str, AgentClientSettings] = Field(default_factory=_default_agents)
    """Agents that call tools, by name (OpenFGA ``agent:<name>``), with their OAuth clients (JSON)."""
    tickets_api_url: str = ""
    """Tickets API base URL (also its token audience); defaults to the demo API in this process."""
    payments_api_url: str = ""
    """Payments API base URL (also its token audience); defaults to the demo API in this process."""

    # ---- The approver page's OIDC client (routes/ui_oidc.py): production sign-in at /ui/oidc/login ----
    ui_oidc_issuer: str = ""
    """Issuer the approver page signs in with (authorization code + PKCE); one of ``oidc_issuers``. Empty: off."""
    ui_client_id: str = ""
    """The approver page's confidential client at that issuer (redirect URI ``<public_url>/ui/oidc/callback``)."""
    ui_client_secret: SecretStr = SecretStr("")
    """Its client secret (``client_secret_basic`` at the token endpoint)."""
    ui_oidc_scope: str = "openid profile"
    """Scope requested at sign-in (add the API scopes where the issuer does not grant them by default)."""
    ui_acr_values: str = "urn:mandate:acr:mfa"
    """``acr_values`` requested at sign-in (approvers usually need MFA); empty requests none."""
    # ---- end of the approver page's OIDC client ----

    embeddings_provider: Literal["lexical", "openai", "sentence-transformers"] = "lexical"
    """``lexical`` (offline feature hashing), ``openai`` (any OpenAI-compatible endpoint, 384-d) or a local model."""
    embeddings_model: str = ""
    """Embeddings model name; empty picks the provider's default. ``openai`` reuses ``MANDATE_LLM_BASE_URL``/``_API_KEY``."""
    llm_base_url: str = ""
    """OpenAI-compatible endpoint; empty uses the offline deterministic planner and responder."""
    llm_model: str = "gpt-4o-mini"
    llm_api_key: SecretStr = SecretStr("")

    vault_key: SecretStr = SecretStr(DEV_SECRET_PLACEHOLDER)
    """Secret from which the token vault's AES-256-GCM key is derived."""
    pseudonym_key: SecretStr = SecretStr(DEV_SECRET_PLACEHOLDER)
    """HMAC key that turns subjects into pseudonymous ids in spans and audit rows."""
    audit_signing_key: SecretStr | None = None
    """Ed25519 private key (PEM) signing audit checkpoints; unset in dev/test: a generated key under ``data_dir``."""
    audit_retention_days: int | None = Field(default=None, ge=1)
    """Days audit records are kept: ``mandate audit purge`` removes older ones. Unset keeps them."""
    trace_content: bool = False
    """Opt in to user messages and tool arguments in spans, redacted (tokens, e-mails, IBANs, long numbers)."""
    traces: Literal["", "jaeger"] = ""
    """Dev only: ``jaeger`` makes ``mandate dev`` start the embedded Jaeger and export every span to it."""
    jaeger_port: int = 16686
    """Port of the embedded Jaeger's query API (``MANDATE_TRACES=jaeger``)."""
    jaeger_otlp_port: int = 4318
    """Port of the embedded Jaeger's OTLP/HTTP receiver."""
    trace_link: str = ""
    """Link from the auditor timeline to a trace: a URL with ``{trace_id}`` (your Jaeger or Tempo). Empty: no link."""
    demo_api_delay: float = 0.0
    """Seconds the demo APIs wait after committing an effect before answering (crash rehearsals)."""
    max_threads_per_user: int = Field(default=10_000, ge=1)
    """Most threads one user may keep at once; creating another answers 429 ``thread_quota_exceeded``."""
    project: Path | None = None
    """The project's ``langgraph.json``: its graphs are served under the policies of the ``mandate.yaml``
    beside it (``mandate serve --config``). Unset: the built-in graphs' project (``mandate/graphs``)."""
    run_workers: int = Field(default=8, ge=0, le=256)
    """Runs one replica executes at once; ``0`` makes an API-only replica (it queues runs for the others)."""
    run_lease_seconds: float = Field(default=20.0, ge=2.0, le=600.0)
    """How long a run's lease lasts without a heartbeat (renewed every third of it); after that, another
    replica continues the run from its last checkpoint."""
    run_event_retention_seconds: int = Field(default=3600, ge=60)
    """How long a run's events are kept to rejoin or replay its stream (``Last-Event-ID``)."""
    shutdown_grace_seconds: float = Field(default=20.0, ge=0.0, le=3600.0)
    """On SIGTERM: how long running runs may take to finish before they are handed back to the queue."""
    webhook_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins (``scheme://host[:port]``) a run's ``webhook`` may target; a comma-separated or JSON list.
    Empty: runs with a webhook are refused (422 ``webhook_not_allowed``)."""
    webhook_secret: SecretStr = SecretStr(DEV_SECRET_PLACEHOLDER)
    """HMAC-SHA256 key that signs webhook deliveries (``Mandate-Signature``)."""
    replica_id: str = ""
    """This replica's name in run leases (``executed_by``); empty: host name, process id and a random tag."""
    run_queue: str = ""
    """The queue this deployment's replicas share; empty: the audience (replicas behind one load balancer
    share their public URL). Another deployment on the same database never executes these runs."""
    seed_demo: bool = False
    """Seed the demo world (users' grants, documents) at startup; dev/test with the dev issuer only."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Web origins (``scheme://host[:port]``) whose pages may call the API from a browser (CORS), such as
    LangGraph Studio's; a comma-separated list or a JSON list. Empty: no CORS. ``*`` (dev/test only) lets any
    page call without credentials. The approver page (``/ui``) and the dev issuer never answer CORS."""

    @field_validator("cors_origins", "webhook_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [o for o in (p.strip() for p in text.split(",")) if o]
        return value

    @field_validator("trace_link")
    @classmethod
    def _check_trace_link(cls, link: str) -> str:
        if link and (not link.startswith(("https://", "http://")) or "{trace_id}" not in link):
            raise ValueError("trace_link: an http(s) URL containing {trace_id}, such as https://jaeger.example/trace/{trace_id}")
        return link

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        normalised = []
        for origin in origins:
            lowered = origin.strip().rstrip("/").lower()
            for scheme, port in (("https://", ":443"), ("http://", ":80")):
                if lowered.startswith(scheme) and lowered.endswith(port):
                    lowered = lowered.removesuffix(port)  # browsers send an origin without its default port
            if lowered == CORS_ANY_ORIGIN:
                if len(origins) > 1:
                    raise ValueError("cors_origins: '*' stands alone (it already allows every origin)")
            elif not _ORIGIN.match(lowered):
                raise ValueError(
                    f"cors_origins: {origin!r} is not a web origin; write scheme://host[:port], "
                    "without path, query or wildcard (for example https://smith.langchain.com)"
                )
            normalised.append(lowered)
        return list(dict.fromkeys(normalised))

    @model_validator(mode="after")
    def _derive_and_check(self) -> Settings:
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"
        self.public_url = self.public_url.rstrip("/")
        if not self.audience:
            self.audience = self.public_url
        if not self.tickets_api_url:
            self.tickets_api_url = f"{self.public_url}/demo/tickets"
        if not self.payments_api_url:
            self.payments_api_url = f"{self.public_url}/demo/payments"
        if not self.run_queue:
            self.run_queue = self.audience
        if self.env == "prod":
            return self  # nothing dev-only is derived; ``production_problems`` lists what is missing
        if not self.token_endpoint and self.dev_issuer:
            self.token_endpoint = f"{self.dev_issuer_url}/token"
        if not self.oidc_issuers and self.dev_issuer:
            self.oidc_issuers = [
                IssuerSettings(issuer=self.dev_issuer_url, id=DEV_ISSUER_KEY, tenants=list(DEV_ISSUER_TENANTS))
            ]
        return self

    def check_production_ready(self) -> None:
        """Refuse to serve in production mode with dev-only values or missing secrets.

        Raises:
            ConfigurationError: One message listing every problem and the variable that fixes it.
        """
        if self.env != "prod":
            return
        missing = self._missing_for_production()
        if missing:
            raise ConfigurationError(
                "Mandate runs in production mode (MANDATE_ENV=prod) and refuses to start without:\n  - "
                + "\n  - ".join(missing)
                + "\nFor a local demo use `mandate dev` (or MANDATE_ENV=dev)."
            )

    def _missing_for_production(self) -> list[str]:
        """Every dev-only value or missing secret, each with the variable that fixes it."""
        missing = []
        if self.dev_issuer:
            missing.append("MANDATE_DEV_ISSUER=false (the dev issuer has known passwords)")
        if self.seed_demo:
            missing.append("MANDATE_SEED_DEMO=false (the demo world grants known users)")
        if not self.database_url:
            missing.append("MANDATE_DATABASE_URL (Postgres with pgvector)")
        if not self.fga_api_url:
            missing.append("MANDATE_FGA_API_URL (the OpenFGA server)")
        if not self.oidc_issuers:
            missing.append("MANDATE_OIDC_ISSUERS (trusted issuers, each with its id and tenants)")
        if self.agents and not self.token_endpoint:
            missing.append("MANDATE_TOKEN_ENDPOINT (where agents exchange tokens, RFC 8693)")
        for name in ("pseudonym_key", "vault_key"):
            if getattr(self, name).get_secret_value() in ("", DEV_SECRET_PLACEHOLDER):
                missing.append(f"MANDATE_{name.upper()} (a real secret, not the placeholder)")
        for agent, client in self.agents.items():
            if client.client_secret.get_secret_value() in ("", DEV_SECRET_PLACEHOLDER):
                missing.append(f"MANDATE_AGENTS: the client secret of agent {agent!r}")
        if self.audit_signing_key is None:
            missing.append("MANDATE_AUDIT_SIGNING_KEY (Ed25519 private key, PEM)")
        if self.traces:
            missing.append("MANDATE_TRACES unset (the embedded Jaeger is dev-only; set OTEL_EXPORTER_OTLP_ENDPOINT)")
        if self.webhook_origins and self.webhook_secret.get_secret_value() in ("", DEV_SECRET_PLACEHOLDER):
            missing.append("MANDATE_WEBHOOK_SECRET (a real secret to sign webhooks, since MANDATE_WEBHOOK_ORIGINS is set)")
        if CORS_ANY_ORIGIN in self.cors_origins:
            missing.append("MANDATE_CORS_ORIGINS without '*' (list the web origins allowed to call the API)")
        return missing

    @property
    def dev_issuer_url(self) -> str:
        """Issuer identifier of the embedded dev issuer."""
        return f"{self.public_url}/dev-idp"


class DevSettings(Settings):
    """The settings of ``mandate dev`` and the tests: dev mode, dev issuer and demo world on by default.

    Environment variables still override each default; ``MANDATE_ENV=prod`` is refused by ``mandate dev``.
    """

    env: Literal["dev", "test", "prod"] = "dev"
    dev_issuer: bool = True
    seed_demo: bool = True
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: [STUDIO_ORIGIN])
    """LangGraph Studio's origin, so Studio in the browser can use ``mandate dev``'s server."""
