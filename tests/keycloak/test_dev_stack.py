"""``MANDATE_IDP=keycloak mandate dev``: the dev stack runs Keycloak, trusts it, grants its users the demo world.

The session's Keycloak is the one this dev stack started (``kc_stack`` in the conftest), so these
tests cost no second Keycloak start. ``mandate token --idp keycloak`` signs in at it through its
login pages, and Mandate answers that token as it answers the dev issuer's.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
import pytest

from mandate.cli.main import main
from mandate.devstack.keycloak import EmbeddedKeycloak
from mandate.runtime.settings import Settings
from tests.utils.servers import free_port
from tests.utils.threads import ask, last_answer, new_thread
from tests.utils.tokens import claims_of, login

QUESTION = "Summarize the latest contract terms for ACME."

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def mandate_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kc_settings: Settings) -> Run:
    """``mandate_token("alice", "--idp", "keycloak")``: ``mandate token`` in-process, pointed at the stack's Keycloak."""
    for name in list(os.environ):
        if name.startswith("MANDATE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MANDATE_ENV", "test")
    monkeypatch.setenv("MANDATE_KEYCLOAK_PORT", str(kc_settings.keycloak_port))

    def run(*argv: str, **env: str) -> tuple[int, str, str]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code = main(["token", *argv])
        out, err = capsys.readouterr()
        return code, out.strip(), err

    return run


def test_dev_stack_with_keycloak_trusts_keycloak_only(kc_settings: Settings, keycloak: EmbeddedKeycloak) -> None:
    assert keycloak.base_url == f"http://127.0.0.1:{kc_settings.keycloak_port}"
    assert [(i.issuer, i.id) for i in kc_settings.oidc_issuers] == [(keycloak.issuer, "kc")]
    assert kc_settings.token_endpoint == keycloak.token_endpoint


def test_cli_token_idp_keycloak_gives_a_token_mandate_authorizes(
    mandate_token: Run, kc_client: httpx.Client, keycloak: EmbeddedKeycloak, sub: Callable[[str], str]
) -> None:
    code, token, err = mandate_token("alice", "--idp", "keycloak")
    assert code == 0, err
    assert (claims_of(token)["iss"], claims_of(token)["sub"]) == (keycloak.issuer, sub("alice"))
    answer = ask(kc_client, token, new_thread(kc_client, token), QUESTION)
    assert answer.status_code == 200, answer.text
    assert "net 45" in last_answer(answer.json())  # the stack granted the demo world to alice at Keycloak
    assert answer.json()["principal"]["subject"] == sub("alice")


def test_cli_token_keycloak_grants_stay_per_person(mandate_token: Run, kc_client: httpx.Client) -> None:
    code, dave, err = mandate_token("dave", "--idp", "keycloak")
    assert code == 0, err
    answer = ask(kc_client, dave, new_thread(kc_client, dave), QUESTION)
    assert answer.status_code == 200, answer.text
    assert "net 45" not in answer.text and "acme-msa" not in answer.text


def test_cli_token_mandate_idp_keycloak_with_mfa_gives_an_mfa_token(mandate_token: Run) -> None:
    code, token, err = mandate_token("bob", "--mfa", MANDATE_IDP="keycloak")
    assert code == 0, err
    assert claims_of(token)["acr"] == "urn:mandate:acr:mfa"


def test_dev_stack_with_keycloak_refuses_dev_issuer_tokens(kc_client: httpx.Client, kc_base_url: str) -> None:
    dev_token = login(kc_base_url, "alice")  # the dev issuer is still served, but no longer trusted
    refused = kc_client.post("/threads", json={}, headers={"Authorization": f"Bearer {dev_token}"})
    assert refused.status_code == 401
    assert dev_token not in refused.text


def test_cli_token_idp_keycloak_refusals_say_why_in_one_line(mandate_token: Run) -> None:
    code, out, err = mandate_token("alice", "--idp", "keycloak", "--password", "wrong")
    assert (code, out) == (1, "") and err == "mandate token: Keycloak did not sign alice in (200)\n"
    code, out, err = mandate_token("mallory", "--idp", "keycloak")
    assert (code, out) == (1, "") and len(err.splitlines()) == 1
    code, _, err = mandate_token("alice", "--idp", "keycloak", "--otp", "000000")
    assert code == 2 and "--mfa" in err
    code, _, err = mandate_token("alice", "--idp", "keycloak", MANDATE_KEYCLOAK_PORT=str(free_port()))
    assert code == 1 and err.startswith("mandate token: cannot reach Keycloak at http://127.0.0.1:")
    assert len(err.splitlines()) == 1


def test_cli_token_unknown_idp_is_refused(mandate_token: Run) -> None:
    code, _, err = mandate_token("alice", MANDATE_IDP="okta")
    assert code == 2 and err.startswith("mandate token: invalid configuration: MANDATE_IDP:")
