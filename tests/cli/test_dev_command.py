"""``mandate dev`` as a person runs it: it starts, answers verified requests only, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mandate.devstack.postgres import EmbeddedPostgres
from mandate.runtime.settings import Settings
from tests.utils.servers import free_port
from tests.utils.tokens import login

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mandate_dev(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``mandate dev`` on the session's Postgres and OpenFGA (a database and store of its own), on a free port."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MANDATE_")},
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "MANDATE_PORT": str(port),
        "MANDATE_DATA_DIR": str(tmp_path_factory.mktemp("mandate-dev")),
        "MANDATE_TOOLS_DIR": str(stack_settings.tools_dir),
        "MANDATE_DATABASE_URL": EmbeddedPostgres(Path(stack_settings.data_dir)).ensure_database("mandate_dev_command"),
        "MANDATE_FGA_API_URL": stack_settings.fga_api_url,
        "MANDATE_FGA_STORE_NAME": "mandate-dev-command",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mandate.cli.main", "dev"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mandate dev did not answer /ok"
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def test_mandate_dev_serves_verified_requests_and_refuses_others(mandate_dev: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = mandate_dev
    alice = login(url, "alice")
    created = httpx.post(f"{url}/threads", json={}, headers={"Authorization": f"Bearer {alice}"}, timeout=30)
    assert created.status_code == 200, created.text
    assert httpx.post(f"{url}/threads", json={}, timeout=30).status_code == 401
    forged = alice[:-4] + ("AAAA" if not alice.endswith("AAAA") else "BBBB")
    refused = httpx.post(f"{url}/threads", json={}, headers={"Authorization": f"Bearer {forged}"}, timeout=30)
    assert refused.status_code == 401


def test_mandate_dev_stops_on_ctrl_c_and_says_what_ran(mandate_dev: tuple[str, subprocess.Popen[str]]) -> None:
    url, process = mandate_dev
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert f"Mandate: {url}" in output and f"Dev issuer: {url}/dev-idp" in output
    assert "Keycloak" not in output  # the default stack has no Keycloak
