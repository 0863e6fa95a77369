"""The evidence bundle: written with every field an auditor needs, and without any secret value."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from mandate.evidence import (
    BUNDLE_FORMAT,
    REDACTED,
    ControlResult,
    EvidenceRun,
    MutationResult,
    collect_versions,
    read_controls,
    redacted_configuration,
    write_bundle,
)
from mandate.runtime.settings import Settings
from mandate.cli.controls import _audit_chain, add_controls_commands
from mandate.runtime.settings import AgentClientSettings

REPO = Path(__file__).resolve().parents[2]
SECRETS = {
    "pseudonym_key": "psk-4c1d-unique-pseudonym-secret",
    "vault_key": "vk-77aa-unique-vault-secret",
    "llm_api_key": "sk-unique-llm-key-0192",
    "fga_api_token": "fga-unique-preshared-key-5521",
    "audit_signing_key": "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIunique-signing-key\n-----END PRIVATE KEY-----\n",
}
AGENT_SECRET = "agent-unique-client-secret-9f3e"
DATABASE_PASSWORD = "pg-unique-password-61b0"


def _settings() -> Settings:
    return Settings(
        env="prod",
        port=8123,
        database_url=f"postgresql://mandate:{DATABASE_PASSWORD}@db.internal:5432/mandate?sslmode=require",
        fga_api_url="https://fga.internal",
        agents={"executor": AgentClientSettings(client_id="agent-executor", client_secret=SecretStr(AGENT_SECRET))},
        **{name: SecretStr(value) for name, value in SECRETS.items()},
    )


def _run() -> EvidenceRun:
    [first, second, *_] = read_controls(REPO / "docs" / "controls.md")
    killed = MutationResult(name=first.mutations[0], removes="r", path="p", status="killed", failing=(first.tests[0],))
    survived = MutationResult(name=second.mutations[0], removes="r", path="p", status="survived")
    return EvidenceRun(
        controls=(
            ControlResult(control=first, tests=dict.fromkeys(first.tests, "passed"), mutations=(killed,)),
            ControlResult(control=second, tests=dict.fromkeys(second.tests, "passed"), mutations=(survived,)),
        ),
        problems=(),
        mutations_run=True,
        seconds=12.0,
    )


def test_bundle_holds_results_versions_chain_and_configuration_without_secrets(tmp_path: Path) -> None:
    settings = _settings()
    chain = {"status": "verified", "tenants": [{"tenant": "acme", "ok": True, "records": 3, "first_seq": 1,
             "last_seq": 3, "checkpoints": 0, "sealed_through": 0, "unsealed": 3, "problem": None}]}
    json_path, markdown_path = write_bundle(
        tmp_path / "evidence", run=_run(), versions=collect_versions(REPO, tools_dir=REPO / ".tools"),
        audit_chain=chain, configuration=redacted_configuration(settings), command="mandate controls check --mutations",
    )
    document = json.loads(json_path.read_text())
    markdown = markdown_path.read_text()

    assert document["format"] == BUNDLE_FORMAT and document["result"] == "failed"  # one mutation survived
    assert document["summary"]["mutations_killed"] == 1 and document["summary"]["mutations_survived"] == 1
    [first, second] = document["controls"]
    assert first["proven"] and not second["proven"]
    assert first["tests"][0]["status"] == "passed" and first["mutations"][0]["status"] == "killed"
    assert {"id", "control", "frameworks", "enforced_by", "tests", "passed", "mutations", "proven"} <= first.keys()
    versions = document["versions"]
    assert versions["mandate"] == "0.1.0"
    assert versions["model_fga_sha256"] == hashlib.sha256((REPO / "mandate/auth/model.fga").read_bytes()).hexdigest()
    assert "openfga_version" in versions and versions["git_commit"]
    assert document["audit_chain"]["status"] == "verified"
    configuration = document["configuration"]
    assert configuration["pseudonym_key"] == REDACTED and configuration["agents"]["executor"]["client_secret"] == REDACTED
    assert configuration["database_url"] == f"postgresql://mandate:{REDACTED}@db.internal:5432/mandate?sslmode=require"
    assert configuration["fga_api_url"] == "https://fga.internal" and configuration["env"] == "prod"
    assert f"| {second['id']} |" in markdown and "**SURVIVED**" in markdown and "## Audit chain" in markdown
    assert versions["model_fga_sha256"] in markdown

    for text in (json_path.read_text(), markdown):
        for secret in [*SECRETS.values(), AGENT_SECRET, DATABASE_PASSWORD, "unique-signing-key"]:
            assert secret not in text


def test_bundle_says_the_audit_chain_was_not_run_without_a_database() -> None:
    assert _audit_chain(Settings(env="test", database_url="")) == {
        "status": "not run", "reason": "no database configured (MANDATE_DATABASE_URL)",
    }


def test_bundle_verifies_the_configured_audit_chain(
    stack_settings: Settings, client: httpx.Client, token: Callable[..., str]
) -> None:
    refused = client.get("/audit", headers={"Authorization": f"Bearer {token('alice')}"})
    assert refused.status_code == 403  # a refused read of the trail: recorded in acme's chain
    chain = _audit_chain(stack_settings)  # the session's database and dev signing key, read only
    assert chain["status"] == "verified", chain
    assert "acme" in {tenant["tenant"] for tenant in chain["tenants"]}


def test_redacted_configuration_masks_passwords_in_urls_and_keeps_the_rest() -> None:
    data = redacted_configuration(Settings(env="test", database_url="postgresql://u@host/db?password=hunter2"))
    assert data["database_url"] == f"postgresql://u@host/db?password={REDACTED}"
    assert data["vault_key"] == REDACTED and data["audit_signing_key"] is None and data["llm_api_key"] == ""


def test_controls_check_help_and_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="mandate")
    add_controls_commands(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit) as shown:
        parser.parse_args(["controls", "check", "--help"])
    assert shown.value.code == 0
    usage = capsys.readouterr().out
    assert "--mutations" in usage and "--output DIR" in usage and "evidence.json" in usage
    args = parser.parse_args(["controls", "check", "--only", "NOPE-1"])
    assert args.run(args) == 2 and "no control NOPE-1" in capsys.readouterr().err
    args = parser.parse_args(["controls", "check", "--repo", str(tmp_path)])
    assert args.run(args) == 2 and "not a Mandate source checkout" in capsys.readouterr().err
