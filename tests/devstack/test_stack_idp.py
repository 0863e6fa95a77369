"""The default dev stack and ``mandate install-tools`` leave Keycloak alone; ``--keycloak`` installs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mandate.devstack.keycloak import KEYCLOAK_VERSION
from mandate.devstack.openfga import ensure_openfga_binary
from mandate.devstack.stack import DevStack
from mandate.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


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


def _install_tools(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    openfga_dir = ensure_openfga_binary(Path(".tools")).parent  # found on PATH: nothing to build
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MANDATE_")}
    clean.update(
        PATH=f"{openfga_dir}{os.pathsep}{os.environ['PATH']}",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "mandate.cli.main", "install-tools", *args],
        env=clean, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )


def test_install_tools_default_leaves_keycloak_alone(tmp_path: Path) -> None:
    done = _install_tools(tmp_path, MANDATE_TOOLS_DIR=str(tmp_path / "tools"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OpenFGA: ") and "Keycloak" not in done.stdout + done.stderr
    assert _no_keycloak_under(tmp_path)


@pytest.mark.parametrize("ask", [["--keycloak"], []], ids=["flag", "MANDATE_IDP"])
def test_install_tools_keycloak_installs_it_once(tmp_path: Path, ask: list[str]) -> None:
    tools = Path(".tools").resolve()  # installed by the Keycloak tests' first run: found, not redone
    done = _install_tools(tmp_path, *ask, MANDATE_TOOLS_DIR=str(tools), **({} if ask else {"MANDATE_IDP": "keycloak"}))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"Keycloak: {tools / f'keycloak-{KEYCLOAK_VERSION}'}"
