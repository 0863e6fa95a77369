"""Starting the servers compared by ``python -m bench.peers``, each in its own process tree.

- Mandate: ``mandate serve --config examples/bench_agent/langgraph.json`` (test mode: the dev
  issuer signs real JWTs; every control of the gate on), on the stack's Postgres and OpenFGA.
- ``langgraph dev``: LangGraph's own local server (in-memory runtime), the plain graph.
- aegra: an open-source LangGraph server on Postgres, from a bench-only virtualenv
  (``.bench-venvs/aegra``, gitignored; :func:`ensure_aegra` makes it with ``uv`` from PyPI).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "bench_agent"
VENVS = ROOT / ".bench-venvs"
AEGRA_VENV = VENVS / "aegra"
AEGRA_PACKAGES = ("aegra-cli==0.11.0", "aegra-api==0.11.0", "langchain==1.5.0", "langchain-openai==1.7.4")
AEGRA_PYTHON = "3.12"
"""aegra-api 0.11 needs Python ≥ 3.12 (the project's venv is 3.11)."""
QUIET = {"LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "true", "LANGSMITH_TRACING": "false"}


@dataclass(kw_only=True)
class Served:
    """A running server: its URL, process, and how the client signs in (per user headers)."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    note: str
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's process tree so far (children included)."""
        try:
            root = psutil.Process(self.process.pid)
            total = 0.0
            for proc in [root, *root.children(recursive=True)]:
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
            return total
        except psutil.NoSuchProcess:
            return 0.0

    def stop(self) -> None:
        """Stop the server's whole process group: aegra's CLI would otherwise leave its uvicorn child behind."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session (start_new_session), so its own group
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever of the group is still there
        self.process.wait(timeout=10)


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, *, path: str = "/ok", timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer {path} in {timeout:.0f} s; see {log}:\n{_tail(log)}")
        time.sleep(0.25)


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _popen(command: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out, start_new_session=True)


def _model_env(model_url: str) -> dict[str, str]:
    return {"OPENAI_BASE_URL": f"{model_url}/v1", "OPENAI_API_KEY": "sk-bench-double"}


def start_mandate(*, database_url: str, fga_api_url: str, data_dir: Path, port: int, model_url: str, log: Path) -> Served:
    """Mandate's production command on the bench agent, every control on (test mode for the dev issuer)."""
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ, **QUIET, **_model_env(model_url),
        "MANDATE_ENV": "test", "MANDATE_DEV_ISSUER": "true", "MANDATE_SEED_DEMO": "true",
        "MANDATE_PORT": str(port), "MANDATE_PUBLIC_URL": url, "MANDATE_DATA_DIR": str(data_dir),
        "MANDATE_DATABASE_URL": database_url, "MANDATE_FGA_API_URL": fga_api_url,
    }
    command = [str(Path(sys.executable).with_name("mandate")), "serve", "--config", str(EXAMPLE / "langgraph.json")]
    process = _popen(command, env=env, cwd=ROOT, log=log)
    wait_for(url, process, log)
    note = "mandate serve, every control on: signed JWT per request, OpenFGA, ledger, audit, Postgres checkpoints"
    return Served(name="mandate", url=url, process=process, log=log, note=note)


def start_langgraph_dev(*, port: int, model_url: str, log: Path) -> Served:
    """``langgraph dev`` (LangGraph's in-memory local server) on the plain graph: no auth, no controls."""
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **QUIET, **_model_env(model_url)}
    command = [
        str(Path(sys.executable).with_name("langgraph")), "dev", "--config", "langgraph.plain.json", "--port", str(port),
        "--host", "127.0.0.1", "--no-browser", "--no-reload",
    ]
    process = _popen(command, env=env, cwd=EXAMPLE, log=log)
    wait_for(url, process, log)
    return Served(name="langgraph dev", url=url, process=process, log=log, note="langgraph dev (in-memory runtime), plain graph, no auth")


def _interpreter() -> str:
    """A working Python of :data:`AEGRA_PYTHON`: on ``PATH`` or under pyenv (nothing is downloaded)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", "~/.pyenv")).expanduser() / "versions"
    candidates = [shutil.which(f"python{AEGRA_PYTHON}"), *sorted(map(str, pyenv.glob(f"{AEGRA_PYTHON}.*/bin/python{AEGRA_PYTHON}")), reverse=True)]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "pass"], capture_output=True, check=False).returncode == 0:
            return candidate
    raise RuntimeError(f"aegra needs Python {AEGRA_PYTHON}: none on PATH or under pyenv. Fix: install one (pyenv install {AEGRA_PYTHON}).")


def ensure_aegra(log: Path) -> Path:
    """The aegra command of the bench-only virtualenv, made from PyPI with ``uv`` on first use.

    Raises:
        RuntimeError: It could not be installed (the message says why).
    """
    aegra = AEGRA_VENV / "bin" / "aegra"
    if aegra.exists():
        return aegra
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    VENVS.mkdir(exist_ok=True)
    with log.open("ab") as out:
        made = subprocess.run(
            [uv, "venv", "--python", _interpreter(), str(AEGRA_VENV)],
            stdout=out, stderr=out, check=False, env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        )
        if made.returncode == 0:
            made = subprocess.run(
                [uv, "pip", "install", "--python", str(AEGRA_VENV / "bin" / "python"), *AEGRA_PACKAGES],
                stdout=out, stderr=out, check=False,
            )
    if made.returncode != 0 or not aegra.exists():
        shutil.rmtree(AEGRA_VENV, ignore_errors=True)
        raise RuntimeError(f"aegra could not be installed into {AEGRA_VENV}; see {log}:\n{_tail(log)}")
    return aegra


def start_aegra(*, aegra: Path, database_url: str, port: int, model_url: str, workdir: Path, log: Path) -> Served:
    """aegra serving the plain graph on its own database of the same Postgres (no auth, no controls)."""
    url = f"http://127.0.0.1:{port}"
    config = workdir / "aegra.json"
    config.write_text(json.dumps({"graphs": {"bench": f"{EXAMPLE / 'agent.py'}:make_plain_graph"}}))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))},
        **QUIET, **_model_env(model_url),
        "DATABASE_URL": database_url, "AEGRA_CONFIG": str(config), "AUTH_TYPE": "noop",
        "LOG_LEVEL": "WARNING", "ENV_MODE": "PRODUCTION", "CRON_ENABLED": "false", "PYTHONPATH": str(EXAMPLE),
    }
    command = [str(aegra), "serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(config)]
    process = _popen(command, env=env, cwd=workdir, log=log)
    wait_for(url, process, log, path="/health")
    return Served(name="aegra", url=url, process=process, log=log, note="aegra 0.11.0 (Postgres checkpoints), plain graph, no auth")


def start_double(*, port: int, log: Path) -> subprocess.Popen[bytes]:
    """The scripted model (:mod:`bench.peers.double`) in its own process."""
    process = _popen([sys.executable, "-m", "bench.peers.double", "--port", str(port)], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, log=log)
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=2)
            return process
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the model double did not start; see {log}") from None
            time.sleep(0.2)
