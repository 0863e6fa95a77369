"""``python -m bench.peers``: the bench agent served by Mandate, ``langgraph dev`` and aegra, side by side.

One graph (``examples/bench_agent``: a ``create_agent`` agent, three model calls and two tool calls
per run against the loopback model double), one client (the official ``langgraph-sdk``: a new thread,
then ``runs.wait``), one server at a time on the same embedded Postgres 18 and OpenFGA. Mandate runs
``make_graph`` with every control on (a signed JWT verified on every request, OpenFGA for the user and
the agent at planning and again at the effect, the call ledger, write-ahead audit records, lease-fenced
Postgres checkpoints); the peers run ``make_plain_graph``, the same agent without ``MandateGate`` (the
gate needs Mandate's runtime context) and without authentication. The floor is the plain graph invoked
in this process on a bare LangGraph ``AsyncPostgresSaver``.

Per server: sequential p50/p95 of a run (``runs.wait``, its thread already created), runs/s with 1, 8
and 32 clients (each run: create a thread, then wait for the run), and CPU per run (user + system CPU
time of the server's process tree over the phase / runs; Postgres, OpenFGA, the model double and the
client are not counted). Every answer is checked. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import tempfile
import time
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.peers import servers
from bench.peers.drive import Result, measure, sdk_runner
from bench.peers.floor import floor_runner

USERS = ("alice", "dave")
"""Two members of acme (the tools' grants are the tenant's); clients alternate between them."""
PEERS = ("mandate", "langgraph-dev", "aegra")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=40, help="sequential runs for p50/p95 (default 40)")
    parser.add_argument("--runs", type=int, default=96, help="runs per concurrent phase (default 96)")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--servers", nargs="*", default=[*PEERS, "floor"], choices=[*PEERS, "floor"])
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--keep", action="store_true", help="keep the data directory (logs) afterwards")
    return parser.parse_args(argv)


def _token(url: str, user: str) -> str:
    form = {"grant_type": "password", "client_id": "mandate-cli", "username": user, "password": "demo"}
    return str(httpx.post(f"{url}/dev-idp/token", data=form, timeout=30).raise_for_status().json()["access_token"])


async def _phases(name: str, note: str, new_client: Any, cpu: Any, args: argparse.Namespace, refresh: Any = None) -> Result:
    rng = random.Random(args.seed)
    result = Result(name=name, note=note)
    await measure(new_client, lambda: 0.0, concurrency=min(3, args.warmup), runs=args.warmup, rng=rng)
    for concurrency, runs in ((1, args.sequential), *((c, args.runs) for c in args.concurrency)):
        if refresh:
            refresh()  # fresh tokens: dev tokens live 15 minutes
        result.phases[concurrency] = await measure(new_client, cpu, concurrency=concurrency, runs=runs, rng=rng)
        phase = result.phases[concurrency]
        print(f"  {name}: {concurrency:>2} clients, {runs} runs: {phase.runs_per_second:.2f} runs/s, "
              f"p50 {phase.p50_ms:.0f} ms, CPU {phase.cpu_ms_per_run:.0f} ms/run", flush=True)
    return result


def _served_factory(served: servers.Served, tokens: dict[str, str] | None) -> Any:
    def headers(slot: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[USERS[slot]]}"} if tokens else {}

    return sdk_runner(served.url, headers, "bench")


def _bench_served(served: servers.Served, args: argparse.Namespace, *, signed: bool) -> Result:
    tokens: dict[str, str] = {}

    def refresh() -> None:
        if signed:
            tokens.update({user: _token(served.url, user) for user in USERS})

    refresh()
    return asyncio.run(_phases(served.name, served.note, _served_factory(served, tokens if signed else None), served.cpu_seconds, args, refresh))


def _bench_floor(database_url: str, model_url: str, args: argparse.Namespace) -> Result:
    me = psutil.Process()

    def cpu() -> float:
        times = me.cpu_times()
        return times.user + times.system

    async def go() -> Result:
        async with floor_runner(database_url, model_url) as new_client:
            note = "in-process ainvoke on AsyncPostgresSaver, plain graph, no server (CPU: this process, client included)"
            return await _phases("floor", note, new_client, cpu, args)

    return asyncio.run(go())


def _table(results: list[Result], concurrency: list[int]) -> str:
    levels = [1, *concurrency]
    head = ["server", "seq p50 ms", "seq p95 ms", *(f"runs/s @{c}" for c in levels), *(f"CPU ms/run @{c}" for c in levels)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if r.error:
            lines.append(f"| {r.name} | " + " | ".join(["n/a"] * (len(head) - 1)) + " |")
            continue
        seq = r.phases[1]
        cells = [f"{seq.p50_ms:.0f}", f"{seq.p95_ms:.0f}", *(f"{r.phases[c].runs_per_second:.2f}" for c in levels),
                 *(f"{r.phases[c].cpu_ms_per_run:.0f}" for c in levels)]
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratios(results: list[Result], concurrency: list[int]) -> list[str]:
    by_name = {r.name: r for r in results if not r.error}
    mandate, floor = by_name.get("mandate"), by_name.get("floor")
    peers = [r for r in by_name.values() if r.name not in ("mandate", "floor")]
    lines = []
    if mandate and peers:
        for c in [1, *concurrency]:
            best = max(peers, key=lambda r: r.phases[c].runs_per_second)
            ratio = mandate.phases[c].runs_per_second / best.phases[c].runs_per_second
            lines.append(f"throughput @{c:>2}: Mandate / best peer ({best.name}) = {ratio:.2f}x  (goal >= 3x: "
                         f"{'met' if ratio >= 3 else f'missed by {3 / ratio:.2f}x'})")
        for peer in peers:
            lines.append(f"seq p50: {peer.name} / Mandate = {peer.phases[1].p50_ms / mandate.phases[1].p50_ms:.2f}x; "
                         f"CPU per run @{concurrency[-1]}: {peer.name} / Mandate = "
                         f"{peer.phases[concurrency[-1]].cpu_ms_per_run / mandate.phases[concurrency[-1]].cpu_ms_per_run:.2f}x")
    if mandate and floor:
        ratio = mandate.phases[1].p50_ms / floor.phases[1].p50_ms
        lines.append(f"seq p50: Mandate / floor = {ratio:.2f}x  (goal <= 1.5x: {'met' if ratio <= 1.5 else f'missed by {ratio / 1.5:.2f}x'})")
        for c in concurrency:
            lines.append(f"throughput @{c:>2}: Mandate / floor = {mandate.phases[c].runs_per_second / floor.phases[c].runs_per_second:.2f}x")
    return lines


def main(argv: list[str] | None = None) -> int:
    from mandate.devstack.stack import DevStack
    from mandate.runtime.settings import DevSettings
    from tests.utils.servers import free_port

    args = parse_arguments(argv)
    root = Path(__file__).resolve().parents[2]
    data_dir = Path(tempfile.mkdtemp(prefix="mandate-bench-peers-"))
    settings = DevSettings(env="test", port=free_port(), data_dir=data_dir, fga_port=free_port(), tools_dir=root / ".tools")
    stack = DevStack(settings, fga_grpc_port=free_port())
    results: list[Result] = []
    load_before = os.getloadavg()
    began = time.time()
    try:
        resolved = stack.start()
        assert stack.postgres is not None
        with ExitStack() as cleanup:
            model_port = free_port()
            double = servers.start_double(port=model_port, log=data_dir / "double.log")
            cleanup.callback(double.terminate)
            model_url = f"http://127.0.0.1:{model_port}"
            for name in args.servers:
                print(f"{name} …", flush=True)
                served = None
                try:
                    if name == "mandate":
                        served = servers.start_mandate(
                            database_url=resolved.database_url, fga_api_url=resolved.fga_api_url, data_dir=data_dir,
                            port=free_port(), model_url=model_url, log=data_dir / "mandate.log",
                        )
                        results.append(_bench_served(served, args, signed=True))
                    elif name == "langgraph-dev":
                        served = servers.start_langgraph_dev(port=free_port(), model_url=model_url, log=data_dir / "langgraph-dev.log")
                        results.append(_bench_served(served, args, signed=False))
                    elif name == "aegra":
                        aegra = servers.ensure_aegra(data_dir / "aegra-install.log")
                        served = servers.start_aegra(
                            aegra=aegra, database_url=stack.postgres.ensure_database("aegra"), port=free_port(),
                            model_url=model_url, workdir=data_dir, log=data_dir / "aegra.log",
                        )
                        results.append(_bench_served(served, args, signed=False))
                    else:
                        results.append(_bench_floor(stack.postgres.ensure_database("floor"), model_url, args))
                except Exception as exc:  # one server failing must not hide the others' figures
                    traceback.print_exc()
                    results.append(Result(name=name, note="", error=f"{type(exc).__name__}: {exc}"))
                finally:
                    if served is not None:
                        served.stop()
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    load_after = os.getloadavg()
    print()
    print(f"bench agent: 3 model calls + 2 tool calls per run; {args.sequential} sequential runs, {args.runs} per concurrent phase; "
          f"{platform.node()} {os.cpu_count()} cores; load average (1/5/15 min) {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f} "
          f"before, {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} after ({time.time() - began:.0f} s)")
    print(_table(results, args.concurrency))
    print()
    for line in _ratios(results, args.concurrency):
        print(line)
    print()
    for r in results:
        print(f"- {r.name}: {r.error or r.note}")
    return 0 if all(r.error is None for r in results) else 1
