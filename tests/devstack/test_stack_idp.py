"""The default dev stack and ``mandate install-tools`` leave Keycloak alone; ``--keycloak`` installs it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mandate.cli.main import main
from mandate.devstack.keycloak import KEYCLOAK_VERSION
from mandate.devstack.openfga import ensure_openfga_binary
from mandate.devstack.stack import DevStack
from mandate.runtime.settings import Settings

Run = Callable[..., tuple[int, str, str]]


def _no_keycloak_under(*roots: Path) -> bool:
    return not any("keycloak" in path.name.lower() for root in roots for path in root.rglob("*"))


def test_dev_stack_default_idp_neither_installs_nor_starts_keycloak(
    stack_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where a download would land
    settings = stack_settings.model_copy(update={"data_dir": tmp_path / "data", "tools_dir": tmp_path / "tools"})
    stack = DevStack(settings)
    try:
        resolved = stack.start()
    finally:
        stack.stop()
    assert stack.keycloak is None
    assert [(i.issuer, i.id) for i in resolved.oidc_issuers] == [(settings.dev_issuer_url, "dev")]
    assert _no_keycloak_under(tmp_path)


@pytest.fixture()
def install_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """``install_tools("--keycloak", MANDATE_TOOLS_DIR=…)``: the command in-process, OpenFGA found on ``PATH``."""
    for name in list(os.environ):
        if name.startswith("MANDATE_"):
            monkeypatch.delenv(name)
    openfga_dir = ensure_openfga_binary(Path(".tools")).parent  # on PATH: nothing to build
    monkeypatch.setenv("PATH", f"{openfga_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where a download would land

    def run(*args: str, **env: str) -> tuple[int, str, str]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code = main(["install-tools", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_install_tools_default_leaves_keycloak_alone(install_tools: Run, tmp_path: Path) -> None:
    # The Go-built servers are already there (linked from this checkout's tools), so only what the
    # command does about Keycloak is at stake, not a rebuild of Jaeger.
    (tmp_path / "tools" / "bin").mkdir(parents=True)
    for binary in ("openfga", "jaeger"):
        (tmp_path / "tools" / "bin" / binary).symlink_to(Path(".tools/bin", binary).resolve())
    code, out, err = install_tools(MANDATE_TOOLS_DIR=str(tmp_path / "tools"))
    assert code == 0, err
    assert out.startswith("OpenFGA: ") and "Keycloak" not in out + err
    assert _no_keycloak_under(tmp_path)


@pytest.mark.parametrize("ask", [["--keycloak"], []], ids=["flag", "MANDATE_IDP"])
def test_install_tools_keycloak_installs_it_once(install_tools: Run, ask: list[str]) -> None:
    tools = Path(".tools").resolve()  # installed by the Keycloak tests' first run: found, not redone
    code, out, err = install_tools(*ask, MANDATE_TOOLS_DIR=str(tools), **({} if ask else {"MANDATE_IDP": "keycloak"}))
    assert code == 0, err
    assert out.splitlines()[-1] == f"Keycloak: {tools / f'keycloak-{KEYCLOAK_VERSION}'}"
