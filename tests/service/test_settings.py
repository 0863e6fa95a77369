"""Settings derive their defaults and refuse dev-only values in production."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mandate.service import Settings


def test_settings_derive_urls_from_host_and_port() -> None:
    settings = Settings(port=8123)
    assert settings.public_url == "http://127.0.0.1:8123"
    assert settings.audience == settings.public_url
    assert settings.dev_issuer_url == "http://127.0.0.1:8123/dev-idp"
    assert [i.issuer for i in settings.oidc_issuers] == [settings.dev_issuer_url]
    assert settings.tickets_api_url == "http://127.0.0.1:8123/demo/tickets"


REAL_AGENTS = {"executor": {"client_id": "agent-executor", "client_secret": "s3cret"}}


def test_settings_prod_refuses_dev_issuer() -> None:
    with pytest.raises(ValidationError, match="MANDATE_DEV_ISSUER"):
        Settings(env="prod", agents=REAL_AGENTS, pseudonym_key="k3y", vault_key="v4ult")


@pytest.mark.parametrize("secret", ["pseudonym_key", "vault_key"])
def test_settings_prod_refuses_placeholder_secrets(secret: str) -> None:
    values = {"pseudonym_key": "k3y", "vault_key": "v4ult", secret: "dev-only-change-me"}
    with pytest.raises(ValidationError, match=secret.upper()):
        Settings(env="prod", dev_issuer=False, agents=REAL_AGENTS, **values)


def test_settings_prod_refuses_agent_without_secret() -> None:
    with pytest.raises(ValidationError, match="agent 'operations'"):
        Settings(env="prod", dev_issuer=False, pseudonym_key="k3y", vault_key="v4ult",
                 agents={**REAL_AGENTS, "operations": {"client_id": "agent-operations"}})


def test_settings_read_nested_issuers_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MANDATE_OIDC_ISSUERS",
        '[{"issuer": "https://acme.eu.auth0.com/", "require_at_jwt": false, "tenant_claim": "https://mandate/tenant"}]',
    )
    [issuer] = Settings().oidc_issuers
    assert issuer.issuer == "https://acme.eu.auth0.com/"
    assert issuer.require_at_jwt is False
    assert issuer.algorithms == ["RS256"]
