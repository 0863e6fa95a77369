"""``python -m bench.studio``: per-run latency of Mandate's graphs under ``langgraph dev`` (LangGraph Studio).

Starts the embedded stack (Postgres 18, OpenFGA) in a temporary directory, serves Mandate on loopback
(for the dev issuer's tokens), and runs ``langgraph dev`` from a checkout (``--root``, default this
one) against them. Then times the same question, one new thread each, ``--runs`` times: the first run
pays for whatever the adapter opens on first use, the later ones show what every run costs. Run it
on two checkouts to compare them (``--root``). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from langgraph_sdk import get_client

from mandate.api.app import create_app
from mandate.audit import build_tracer_provider
from mandate.devstack.stack import DevStack
from mandate.runtime.settings import DevSettings, Settings
from tests.utils.servers import free_port, serve_in_thread, wait_until_up
from tests.utils.tokens import login

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Summarize the latest contract terms for ACME."


async def _time_runs(url: str, token: str, runs: int) -> list[float]:
    seconds = []
    async with get_client(url=url, api_key=None, headers={"Authorization": f"Bearer {token}"}) as alice:
        for _ in range(runs):
            began = time.perf_counter()
            thread = await alice.threads.create()
            answer = await alice.runs.wait(
                thread["thread_id"], "mandate", input={"messages": [{"role": "user", "content": QUESTION}]}
            )
            seconds.append(time.perf_counter() - began)
            if "net 45" not in answer["messages"][-1]["content"]:
                raise SystemExit(f"unexpected answer: {answer['messages'][-1]['content']!r}")
    return seconds


def _langgraph_dev(root: Path, settings: Settings, base_url: str, *, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(root),  # that checkout's ``mandate`` is the one the server imports
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LANGSMITH_TRACING": "false",
        "MANDATE_ENV": "test",
        "MANDATE_DEV_ISSUER": "true",
        "MANDATE_PUBLIC_URL": base_url,
        "MANDATE_DATA_DIR": str(settings.data_dir),
        "MANDATE_DATABASE_URL": settings.database_url,
        "MANDATE_FGA_API_URL": settings.fga_api_url,
    }
    command = [
        str(Path(sys.executable).with_name("langgraph")), "dev", "--config", "langgraph.json", "--port", str(port),
        "--host", "127.0.0.1", "--no-browser", "--no-reload", "--allow-blocking",
    ]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=out)


def main(argv: list[str] | None = None) -> None:
    """Print the first run, the median of the later runs, and their ratio."""
    parser = argparse.ArgumentParser(prog="python -m bench.studio", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="runs to time (default 6)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose langgraph.json is served")
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="mandate-bench-studio-"))
    settings = DevSettings(env="test", port=free_port(), data_dir=data_dir, fga_port=free_port(), tools_dir=ROOT / ".tools")
    stack = DevStack(settings, fga_grpc_port=free_port())
    try:
        resolved = stack.start()
        with serve_in_thread(create_app(resolved, tracer_provider=build_tracer_provider()), port=resolved.port) as base:
            port, log = free_port(), data_dir / "langgraph-dev.log"
            server = _langgraph_dev(args.root.resolve(), resolved, base, port=port, log=log)
            try:
                wait_until_up(f"http://127.0.0.1:{port}", server, log=str(log))
                seconds = asyncio.run(_time_runs(f"http://127.0.0.1:{port}", login(base, "alice"), args.runs))
            finally:
                server.terminate()
                server.wait(timeout=30)
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    later = statistics.median(seconds[1:])
    print(f"langgraph dev from {args.root.resolve()}: {args.runs} runs, a new thread each")
    print("runs (s): " + " ".join(f"{s:.3f}" for s in seconds))
    print(f"first run {seconds[0]:.3f} s; later runs, median {later:.3f} s; first / later = {seconds[0] / later:.1f}")


if __name__ == "__main__":
    main()
