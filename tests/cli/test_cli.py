"""The ``mandate`` command line: light to start, helpful, one line per failure, one settings rule."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mandate.auth.dev_issuer import DEV_CLI_CLIENT_ID
from mandate.runtime.settings import Settings
from mandate.devstack.postgres import EmbeddedPostgres
from mandate.cli.main import DEV_CLI_CLIENT_ID as CLI_CLIENT_ID
from mandate.cli.main import build_parser, main
from tests.utils.servers import free_port
from tests.utils.tokens import claims_of

HEAVY = ("langgraph", "langchain_openai", "langchain_core", "fastapi", "openfga_sdk", "psycopg", "uvicorn", "httpx")
"""Modules the app needs and a light command must not import."""

Run = Callable[..., tuple[int, str, str]]


def _run_in_fresh_python(argvs: list[list[str]], env: dict[str, str]) -> dict[str, object]:
    """Run ``main(argv)`` for each argv in a new interpreter; report exit codes and the heavy modules loaded."""
    script = f"""
import contextlib, io, json, sys
from mandate.cli.main import main
codes, err = [], io.StringIO()
for argv in {argvs!r}:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            codes.append(main(argv))
        except SystemExit as exit_:
            codes.append(exit_.code)
print(json.dumps({{"codes": codes, "stderr": err.getvalue(),
                  "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _bare_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: no MANDATE_* variable unless given."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **extra}


@pytest.fixture()
def mandate(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """``mandate("audit", "verify", MANDATE_ENV="test")``: the CLI in-process, with only the given variables."""
    for name in list(os.environ):
        if name.startswith("MANDATE_"):
            monkeypatch.delenv(name)

    def run(*argv: str, **env: str) -> tuple[int, str, str]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_help_of_every_command_imports_nothing_heavy() -> None:
    argvs = [["--help"], ["dev", "--help"], ["serve", "--help"], ["token", "--help"], ["audit", "verify", "--help"],
             ["users", "revoke", "--help"], ["ingest", "--help"], ["install-tools", "--help"]]
    result = _run_in_fresh_python(argvs, _bare_env())
    assert result["codes"] == [0] * len(argvs)
    assert result["heavy"] == []
    assert result["stderr"] == ""  # no warnings or log lines around the help


def test_cli_token_with_the_server_down_says_so_in_one_line_without_loading_the_app() -> None:
    result = _run_in_fresh_python([["token", "alice"]], _bare_env(MANDATE_PORT=str(free_port())))
    assert result["codes"] == [1]
    lines = str(result["stderr"]).splitlines()
    assert len(lines) == 1 and "cannot reach the dev issuer" in lines[0] and "mandate dev" in lines[0]
    assert result["heavy"] == []


def _parsers(parser: argparse.ArgumentParser, path: str = "mandate") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:  # noqa: SLF001  (argparse keeps its actions here)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_cli_every_command_and_option_has_a_help_text() -> None:
    missing = []
    for path, parser in _parsers(build_parser()):
        if not parser.description and path != "mandate":
            missing.append(f"{path}: no description")
        for action in parser._actions:  # noqa: SLF001
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                missing += [f"{path} {c.dest}" for c in action._choices_actions if not c.help]  # noqa: SLF001
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []
    helps = dict(_parsers(build_parser()))
    assert "MANDATE_DATA_DIR" in helps["mandate dev"].format_help() and "alice" in helps["mandate dev"].format_help()
    assert "MANDATE_OIDC_ISSUERS" in helps["mandate serve"].format_help()


def test_cli_token_uses_the_dev_issuers_cli_client() -> None:
    assert CLI_CLIENT_ID == DEV_CLI_CLIENT_ID


def test_cli_token_says_in_one_line_why_a_sign_in_is_refused(mandate: Run, base_url: str) -> None:
    env = {"MANDATE_ENV": "test", "MANDATE_PUBLIC_URL": base_url}
    code, out, err = mandate("token", "alice", "--password", "wrong", **env)
    assert (code, out) == (1, "")
    assert err == "mandate token: the dev issuer refused to sign in 'alice': Invalid username or password.\n"
    code, _, unknown = mandate("token", "nobody-here", **env)
    assert code == 1 and unknown.endswith(": Invalid username or password.\n")  # says no more than the issuer
    code, _, err = mandate("token", "alice", "--otp", "123456", **env)
    assert code == 1 and err == "mandate token: the dev issuer refused to sign in 'alice': Invalid one-time password.\n"
    code, token, err = mandate("token", "alice", "--otp", "000000", **env)
    assert (code, err) == (0, "")
    assert claims_of(token.strip())["acr"] == "urn:mandate:acr:mfa"


def test_cli_token_mfa_at_the_dev_issuer_uses_its_one_time_password(mandate: Run, base_url: str) -> None:
    env = {"MANDATE_ENV": "test", "MANDATE_PUBLIC_URL": base_url}
    code, token, err = mandate("token", "alice", "--mfa", **env)
    assert (code, err) == (0, "")
    assert claims_of(token.strip())["acr"] == "urn:mandate:acr:mfa"
    code, _, err = mandate("token", "alice", "--mfa", "--otp", "123456", **env)  # a given code is the one sent
    assert code == 1 and err.endswith("Invalid one-time password.\n")
    code, token, _ = mandate("token", "alice", "--idp", "dev", MANDATE_IDP="keycloak", **env)  # the flag wins
    assert code == 0 and claims_of(token.strip())["iss"] == f"{base_url}/dev-idp"


def test_cli_token_answered_by_something_else_says_what_answered(mandate: Run, base_url: str) -> None:
    code, _, err = mandate("token", "alice", MANDATE_ENV="test", MANDATE_PUBLIC_URL=f"{base_url}/nowhere")
    assert code == 1 and "answered HTTP 404, not a token" in err and len(err.splitlines()) == 1


def test_cli_token_is_dev_only(mandate: Run) -> None:
    code, _, err = mandate("token", "alice", MANDATE_ENV="prod")
    assert code == 2 and err.startswith("mandate token: dev only")


@pytest.mark.parametrize(
    ("argv", "variables"),
    [
        (["audit", "verify"], "MANDATE_DATABASE_URL and MANDATE_AUDIT_SIGNING_KEY"),
        (["audit", "erase", "--issuer", "i", "--subject", "s"],
         "MANDATE_DATABASE_URL, MANDATE_AUDIT_SIGNING_KEY and MANDATE_PSEUDONYM_KEY"),
        (["users", "list-revoked"], "MANDATE_DATABASE_URL"),
        (["ingest", "--delete", "acme/x.md"], "MANDATE_DATABASE_URL and MANDATE_FGA_API_URL"),
    ],
)
def test_cli_operator_command_in_production_names_the_missing_variables(
    mandate: Run, argv: list[str], variables: str
) -> None:
    code, out, err = mandate(*argv)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert f"production mode (MANDATE_ENV=prod) needs {variables};" in err and "--dev" in err


def test_cli_operator_commands_refuse_dev_with_a_production_environment(mandate: Run) -> None:
    code, _, err = mandate("--dev", "users", "list-revoked", MANDATE_ENV="prod")
    assert code == 2 and "--dev conflicts with MANDATE_ENV=prod" in err


def test_cli_invalid_setting_is_one_line_naming_the_variable(mandate: Run) -> None:
    code, _, err = mandate("audit", "verify", MANDATE_ENV="test", MANDATE_PORT="eighty")
    assert code == 2 and err.startswith("mandate audit verify: invalid configuration: MANDATE_PORT:")
    assert len(err.splitlines()) == 1


def test_cli_dev_flag_attaches_every_operator_command_to_the_running_embedded_stack(
    mandate: Run, stack_settings: Settings
) -> None:
    env = {"MANDATE_DATA_DIR": str(stack_settings.data_dir), "MANDATE_FGA_PORT": str(stack_settings.fga_port)}
    postgres = EmbeddedPostgres(stack_settings.data_dir)
    running = postgres.pid
    assert mandate("--dev", "audit", "verify", **env)[0] == 0
    assert mandate("users", "list-revoked", "--dev", **env)[0] == 0
    code, out, err = mandate("--dev", "ingest", "--delete", "nosuch/doc.md", **env)
    assert (code, out) == (0, "nosuch/doc.md: not found\n"), err
    code, _, _ = mandate("users", "list-revoked", MANDATE_ENV="test", **env)  # MANDATE_ENV=test: the same rule
    assert code == 0
    assert postgres.pid == running  # attached, not restarted or stopped


def test_cli_dev_mode_starts_the_embedded_database_for_the_command_and_stops_it_after(mandate: Run) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="mandate-cli-"))  # not pytest's 0700 tmp: Postgres runs as its own user
    try:
        code, out, err = mandate("--dev", "audit", "verify", MANDATE_DATA_DIR=str(data_dir))
        assert (code, out) == (0, "No audit records.\n"), err
        assert EmbeddedPostgres(data_dir).pid is None
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
