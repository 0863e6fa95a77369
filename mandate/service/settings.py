"""The one settings object: every knob is an environment variable ``MANDATE_*``.

Built once by ``service/`` at startup; rooms receive plain values as constructor
arguments and never read the environment themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["AgentClientSettings", "IssuerSettings", "Settings"]

DEV_SECRET_PLACEHOLDER = "dev-only-change-me"
"""Default for every secret; accepted only when ``env`` is ``dev`` or ``test``."""


class IssuerSettings(BaseModel):
    """One trusted token issuer (an entry of ``MANDATE_OIDC_ISSUERS``)."""

    issuer: str
    """Exact ``iss`` value; its discovery document is ``<issuer>/.well-known/openid-configuration``."""
    algorithms: list[str] = Field(default_factory=lambda: ["RS256"])
    """Signature algorithms pinned for this issuer (asymmetric only)."""
    require_at_jwt: bool = True
    """Whether access tokens must carry ``typ: at+jwt`` (RFC 9068); Auth0 and Keycloak differ."""
    tenant_claim: str = "tenant"
    """Claim holding the tenant id (for example ``https://example.com/tenant`` on Auth0)."""


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

    env: Literal["dev", "test", "prod"] = "dev"
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

    audience: str = ""
    """The audience access tokens must name; defaults to ``public_url``."""
    oidc_issuers: list[IssuerSettings] = Field(default_factory=list)
    """Trusted issuers (JSON); empty trusts only the dev issuer at ``<public_url>/dev-idp``."""
    dev_issuer: bool = True
    """Serve the dev OIDC issuer under ``/dev-idp`` (refused unless ``env`` is dev or test)."""

    token_endpoint: str = ""
    """Where agents exchange tokens (RFC 8693); defaults to the dev issuer's token endpoint."""
    agents: dict[str, AgentClientSettings] = Field(default_factory=_default_agents)
    """Agents that call tools, by name (OpenFGA ``agent:<name>``), with their OAuth clients (JSON)."""
    tickets_api_url: str = ""
    """Tickets API base URL (also its token audience); defaults to the demo API in this process."""
    payments_api_url: str = ""
    """Payments API base URL (also its token audience); defaults to the demo API in this process."""

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
    demo_api_delay: float = 0.0
    """Seconds the demo APIs wait after committing an effect before answering (crash rehearsals)."""
    seed_demo: bool = True
    """Seed the demo world (users' grants, documents) at startup when the dev issuer is on."""

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
        if not self.token_endpoint:
            self.token_endpoint = f"{self.dev_issuer_url}/token"
        if not self.oidc_issuers:
            self.oidc_issuers = [IssuerSettings(issuer=self.dev_issuer_url)]
        if self.env == "prod":
            if self.dev_issuer:
                raise ValueError("MANDATE_DEV_ISSUER must be false when MANDATE_ENV=prod")
            for name in ("pseudonym_key", "vault_key"):
                if getattr(self, name).get_secret_value() == DEV_SECRET_PLACEHOLDER:
                    raise ValueError(f"MANDATE_{name.upper()} must be set to a real secret when MANDATE_ENV=prod")
            for agent, client in self.agents.items():
                if client.client_secret.get_secret_value() == DEV_SECRET_PLACEHOLDER:
                    raise ValueError(f"MANDATE_AGENTS: the client secret of agent {agent!r} must be set when MANDATE_ENV=prod")
            if self.audit_signing_key is None:
                raise ValueError("MANDATE_AUDIT_SIGNING_KEY must be set when MANDATE_ENV=prod")
        return self

    @property
    def dev_issuer_url(self) -> str:
        """Issuer identifier of the embedded dev issuer."""
        return f"{self.public_url}/dev-idp"
