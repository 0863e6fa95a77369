"""1, 2 and 3 replicas side by side: runs/s, p50/p95 run latency, queue claim latency, CPU.

Each deployment is N ``mandate serve`` processes behind a loopback round-robin balancer (its URL is
their public URL, so they share one run queue) over one embedded Postgres and one OpenFGA. A client
keeps ``--concurrency`` ``/runs/wait`` requests in flight (alice of acme and carol of globex asking
about their contracts; offline planner and responder, so the runs are CPU-bound). Latency is the
client's, request to answer; claim latency is the queue's, run created → run started (from the
rows). CPU is what the replica processes used (cores busy on average) and the whole machine's
utilisation over the same wall time: on a 2-core machine the replicas, Postgres, OpenFGA and the
client share two cores, so more replicas cannot add throughput once they are busy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psycopg

from mandate.devstack.balancer import balancer
from mandate.devstack.stack import DevStack
from mandate.runtime.settings import DevSettings, Settings

QUESTION = "What does the contract say?"
USERS = ("alice", "carol")


@dataclass(frozen=True, kw_only=True, slots=True)
class Cell:
    """What one deployment measured."""

    replicas: int
    runs: int
    runs_per_second: float
    p50_ms: float
    p95_ms: float
    claim_p50_ms: float
    claim_p99_ms: float
    replica_cores: float
    """CPU seconds the replica processes used per wall second."""
    machine_cpu_percent: float
    """Busy share of all CPUs of the machine over the same wall time (replicas, Postgres, OpenFGA, client)."""


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=150, help="runs per deployment (after 6 warm-up runs)")
    parser.add_argument("--concurrency", type=int, default=12, help="requests in flight")
    parser.add_argument("--replicas", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    return parser.parse_args(argv)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _start(stack: Settings, *, port: int, public_url: str, name: str, seed: bool, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MANDATE_ENV": "test",
        "MANDATE_DEV_ISSUER": "true",
        "MANDATE_SEED_DEMO": "true" if seed else "false",
        "MANDATE_PORT": str(port),
        "MANDATE_PUBLIC_URL": public_url,
        "MANDATE_REPLICA_ID": name,
        "MANDATE_DATA_DIR": str(stack.data_dir),
        "MANDATE_DATABASE_URL": stack.database_url,
        "MANDATE_FGA_API_URL": stack.fga_api_url,
    }
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "mandate.cli.main", "serve"], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ok", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"replica {name} did not start; see {log}")
        time.sleep(0.3)


def _token(url: str, user: str) -> str:
    form = {"grant_type": "password", "client_id": "mandate-cli", "username": user, "password": "demo"}
    return str(httpx.post(f"{url}/dev-idp/token", data=form, timeout=30).raise_for_status().json()["access_token"])


async def _drive(url: str, tokens: dict[str, str], *, runs: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    slots = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def one(index: int) -> None:
            headers = {"Authorization": f"Bearer {tokens[USERS[index % 2]]}"}
            async with slots:
                thread = (await client.post("/threads", json={}, headers=headers)).json()["thread_id"]
                body = {"input": {"messages": [{"role": "user", "content": QUESTION}]}}
                started = time.perf_counter()
                answer = await client.post(f"/threads/{thread}/runs/wait", json=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                answer.raise_for_status()

        await asyncio.gather(*(one(i) for i in range(runs)))
    return latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _deployment(stack: Settings, count: int, args: argparse.Namespace, seed: bool) -> Cell:
    ports = [_free_port() for _ in range(count)]
    with balancer(ports) as url, ExitStack() as stop:
        processes = []
        for index, port in enumerate(ports):
            log = Path(stack.data_dir) / f"bench-{count}-{index}.log"
            processes.append(_start(stack, port=port, public_url=url, name=f"b{count}-{index}", seed=seed and index == 0, log=log))
            stop.callback(processes[-1].send_signal, signal.SIGTERM)
        tokens = {user: _token(url, user) for user in USERS}
        asyncio.run(_drive(url, tokens, runs=6, concurrency=3))  # warm-up: imports, JWKS, pools
        since = time.time()
        cpu_before = sum(_cpu_seconds(p.pid) for p in processes)
        machine_before = _machine_busy()
        wall = time.perf_counter()
        latencies = asyncio.run(_drive(url, tokens, runs=args.runs, concurrency=args.concurrency))
        wall = time.perf_counter() - wall
        cpu = sum(_cpu_seconds(p.pid) for p in processes) - cpu_before
        busy, total = (a - b for a, b in zip(_machine_busy(), machine_before, strict=True))
        with psycopg.connect(stack.database_url) as conn:
            claims = [
                float(row[0])
                for row in conn.execute(
                    "SELECT extract(epoch FROM started_at - created_at) FROM mandate.runs "
                    "WHERE queue = %s AND created_at >= to_timestamp(%s) AND started_at IS NOT NULL",
                    (url, since),
                )
            ]
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
    return Cell(
        replicas=count,
        runs=len(latencies),
        runs_per_second=len(latencies) / wall,
        p50_ms=statistics.median(latencies) * 1000,
        p95_ms=_percentile(latencies, 0.95) * 1000,
        claim_p50_ms=statistics.median(claims) * 1000,
        claim_p99_ms=_percentile(claims, 0.99) * 1000,
        replica_cores=cpu / wall,
        machine_cpu_percent=100 * busy / total,
    )


def _table(cells: list[Cell]) -> str:
    lines = [
        "| replicas | runs | runs/s | run p50 ms | run p95 ms | claim p50 ms | claim p99 ms | replica CPU (cores) | machine CPU % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        lines.append(
            f"| {c.replicas} | {c.runs} | {c.runs_per_second:.1f} | {c.p50_ms:.0f} | {c.p95_ms:.0f} | "
            f"{c.claim_p50_ms:.1f} | {c.claim_p99_ms:.1f} | {c.replica_cores:.2f} | {c.machine_cpu_percent:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.replicas``."""
    args = parse_arguments(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="mandate-bench-replicas-"))
    settings = DevSettings(env="test", port=_free_port(), data_dir=data_dir, tools_dir=Path(".tools").absolute(), fga_port=_free_port())
    stack = DevStack(settings, fga_grpc_port=_free_port())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    header = (
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on {platform.machine()}, {os.cpu_count()} CPUs (load average {load} at start), "
        f"Python {platform.python_version()}; {args.runs} `/runs/wait` runs per deployment, {args.concurrency} in flight, "
        "offline planner and responder, one embedded Postgres 18 and one OpenFGA shared by all."
    )
    cells = []
    try:
        resolved = stack.start()
        for index, count in enumerate(args.replicas):
            cells.append(_deployment(resolved, count, args, seed=index == 0))
            print(_table(cells[-1:]).splitlines()[-1], flush=True)
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    report = f"# Replicas benchmark\n\n{header}\n\n{_table(cells)}\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replicas.md").write_text(report)
    (args.out / "replicas.json").write_text(json.dumps({"notes": header, "cells": [asdict(c) for c in cells]}, indent=2))
    print(report)
    return 0
