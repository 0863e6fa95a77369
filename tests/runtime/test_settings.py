"""Settings are production-safe by default: dev behaviour only when asked for, and prod refuses to start
with dev-only values or missing secrets, naming every one."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from mandate.runtime.settings import DevSettings, Settings
from mandate.runtime.settings import ConfigurationError

REAL_AGENTS = {"executor": {"client_id": "agent-executor", "client_secret": "s3cret"}}
REAL_ISSUERS = [{"issuer": "https://login.example.com/realms/acme", "id": "kc", "tenants": ["acme"]}]
PRODUCTION = {
    "database_url": "postgresql://db/mandate",
    "fga_api_url": "http://openfga:8080",
    "oidc_issuers": REAL_ISSUERS,
    "token_endpoint": "https://login.example.com/realms/acme/protocol/openid-connect/token",
    "agents": REAL_AGENTS,
    "pseudonym_key": "k3y",
    "vault_key": "v4ult",
    "audit_signing_key": "-----BEGIN PRIVATE KEY-----\n...",
}


def test_settings_default_to_production_without_dev_issuer_or_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MANDATE_ENV", raising=False)
    settings = Settings(port=8123)
    assert (settings.env, settings.dev_issuer, settings.seed_demo) == ("prod", False, False)
    assert settings.oidc_issuers == []  # nothing trusted until configured: never the dev issuer
    assert settings.token_endpoint == ""


def test_dev_settings_trust_the_dev_issuer_for_the_demo_tenants_only() -> None:
    settings = DevSettings(port=8123)
    assert settings.public_url == "http://127.0.0.1:8123"
    assert settings.audience == settings.public_url
    [issuer] = settings.oidc_issuers
    assert (issuer.issuer, issuer.id, issuer.tenants) == ("http://127.0.0.1:8123/dev-idp", "dev", ["acme", "globex"])
    assert settings.token_endpoint == "http://127.0.0.1:8123/dev-idp/token"


def test_production_with_nothing_configured_lists_every_missing_value_at_once() -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings().check_production_ready()
    message = refused.value.message
    for variable in (
        "MANDATE_DATABASE_URL", "MANDATE_FGA_API_URL", "MANDATE_OIDC_ISSUERS", "MANDATE_TOKEN_ENDPOINT",
        "MANDATE_PSEUDONYM_KEY", "MANDATE_VAULT_KEY", "MANDATE_AUDIT_SIGNING_KEY", "agent 'executor'", "agent 'operations'",
    ):
        assert variable in message
    assert "mandate dev" in message


def test_production_fully_configured_starts() -> None:
    Settings(**PRODUCTION).check_production_ready()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"dev_issuer": True}, "MANDATE_DEV_ISSUER"),
        ({"seed_demo": True}, "MANDATE_SEED_DEMO"),
        ({"pseudonym_key": "dev-only-change-me"}, "MANDATE_PSEUDONYM_KEY"),
        ({"vault_key": "dev-only-change-me"}, "MANDATE_VAULT_KEY"),
        ({"agents": {**REAL_AGENTS, "operations": {"client_id": "agent-operations"}}}, "agent 'operations'"),
        ({"oidc_issuers": []}, "MANDATE_OIDC_ISSUERS"),
        ({"traces": "jaeger"}, "MANDATE_TRACES"),
    ],
)
def test_production_refuses_each_dev_only_value(change: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Settings(**{**PRODUCTION, **change}).check_production_ready()


def test_issuer_needs_a_key_and_the_tenants_it_may_assert() -> None:
    with pytest.raises(ValidationError, match="tenants"):
        Settings(oidc_issuers=[{"issuer": "https://i.example", "id": "i"}])
    with pytest.raises(ValidationError, match="tenants"):
        Settings(oidc_issuers=[{"issuer": "https://i.example", "id": "i", "tenants": []}])
    with pytest.raises(ValidationError, match="id"):
        Settings(oidc_issuers=[{"issuer": "https://i.example", "id": "Not A Key!", "tenants": ["t"]}])


def test_settings_read_nested_issuers_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MANDATE_OIDC_ISSUERS",
        '[{"issuer": "https://acme.eu.auth0.com/", "id": "auth0", "tenants": ["acme"], "require_at_jwt": false,'
        ' "client_ids": ["cli"], "tenant_claim": "https://mandate/tenant"}]',
    )
    [issuer] = Settings().oidc_issuers
    assert (issuer.issuer, issuer.id, issuer.tenants) == ("https://acme.eu.auth0.com/", "auth0", ["acme"])
    assert issuer.require_at_jwt is False
    assert issuer.algorithms == ["RS256"]


def test_mandate_serve_refuses_to_start_in_production_and_says_why(tmp_path: object) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    served = subprocess.run(
        [sys.executable, "-m", "mandate.cli.main", "serve"], env=env, capture_output=True, text=True, timeout=120
    )
    assert served.returncode == 2
    assert "production mode" in served.stderr and "MANDATE_OIDC_ISSUERS" in served.stderr
    assert "Traceback" not in served.stderr


@pytest.mark.parametrize("link", ["jaeger.example/trace/{trace_id}", "https://jaeger.example/trace/", "javascript:{trace_id}"])
def test_trace_link_must_be_a_web_url_with_the_trace_id(link: str) -> None:
    with pytest.raises(ValidationError, match="trace_link"):
        Settings(trace_link=link)
    assert Settings(trace_link="https://jaeger.example/trace/{trace_id}").trace_link.endswith("{trace_id}")
