"""``python -m bench.audit``: audit overhead per run and write throughput, beside their targets.

Starts the embedded stack (Postgres 18, OpenFGA) in a temporary directory and serves Mandate on
loopback (dev issuer, demo tickets API). Then:

- **overhead**: the same run, a ticket request paused for consent and resumed with approval (two
  invocations, three audit records, one delegated tool call), alternately with the durable audit
  log and with a no-op sink; medians and their ratio.
- **throughput**: records/s sustained for a few seconds by concurrent writers into a fresh
  database, for one tenant (one chain, so one lock) and spread over eight tenants.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql
from opentelemetry.sdk.trace import TracerProvider

from mandate import audit
from mandate._db import apply_migrations, open_pool
from mandate.audit import AuditEvent, AuditLog, build_tracer_provider
from mandate.devstack.stack import DevStack
from mandate.runtime.settings import DevSettings, Settings
from mandate.api.app import create_app
from mandate.runtime.signing import audit_signer
from mandate.runtime.runs import RunManager
from mandate.runtime.services import Services, open_services
from mandate.api.schemas import RunCreate
from tests.utils.servers import free_port, serve_in_thread

OVERHEAD_TARGET = 0.10
THROUGHPUT_TARGET = 2_000


class NullSink:
    """The audit turned off: accepts every event, writes nothing."""

    async def record(self, event: AuditEvent) -> str:
        return str(uuid.uuid4())

    async def record_denial(self, event: AuditEvent) -> str | None:
        return None

    def remember_subject(self, *, pseudonym: str, issuer: str, subject: str) -> None:
        return None


ASK = RunCreate.model_validate({"input": {"messages": [{"role": "user", "content": "Open a ticket: bench lamp"}]}})
APPROVE = RunCreate.model_validate({"command": {"resume": {"decisions": [{"type": "approve"}]}}})


async def _ticket_run(services: Services, token: str) -> float:
    """Seconds for one ticket run: ask (pauses for consent), then approve (the tool is called)."""
    principal = await services.verifier.verify(token)
    thread_id = str((await services.threads.create(principal, thread_id=None, metadata={}))["thread_id"])
    runs = RunManager(services)
    started = time.perf_counter()
    await runs.run_and_wait(thread_id=thread_id, body=ASK, caller=principal, token=token)
    values = await runs.run_and_wait(thread_id=thread_id, body=APPROVE, caller=principal, token=token)
    elapsed = time.perf_counter() - started
    assert values["outcomes"][-1]["status"] == "succeeded", values["outcomes"]
    return elapsed


async def overhead(settings: Settings, token: str, *, runs: int) -> tuple[float, float]:
    """Median seconds per run with the durable audit and with a no-op sink (interleaved)."""
    async with open_services(settings, tracer_provider=TracerProvider()) as services:
        variants: dict[str, Services] = {"audit": services, "null": dataclasses.replace(services, audit=NullSink())}
        for variant in variants.values():  # warm caches, connections and the token broker
            await _ticket_run(variant, token)
        timings: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(runs):
            for name, variant in variants.items():
                timings[name].append(await _ticket_run(variant, token))
    return statistics.median(timings["audit"]), statistics.median(timings["null"])


async def throughput(settings: Settings, *, writers: int, tenants: int, seconds: float) -> float:
    """Records/s that ``writers`` concurrent writers sustain for ``seconds`` over ``tenants`` chains."""
    database = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    dsn = urlunsplit(urlsplit(settings.database_url)._replace(path=f"/{database}"))
    pool = await open_pool(dsn, max_size=min(writers, 16))
    try:
        await apply_migrations(pool, room="audit", migrations=audit.MIGRATIONS)
        log = AuditLog(pool=pool, signer=audit_signer(settings))
        written = 0
        deadline = time.perf_counter() + seconds

        async def writer(n: int) -> None:
            nonlocal written
            while time.perf_counter() < deadline:
                await log.record(
                    AuditEvent(tenant=f"tenant-{n % tenants}", event="tool.started", actor="psn_bench",
                               tool="create_ticket", decision="allowed", detail={"n": written})
                )
                written += 1

        started = time.perf_counter()
        await asyncio.gather(*(writer(n) for n in range(writers)))
        return written / (time.perf_counter() - started)
    finally:
        await pool.close()


def _measure(settings: Settings, runs: int, seconds: float) -> None:
    app = create_app(settings, tracer_provider=build_tracer_provider())
    with serve_in_thread(app, port=settings.port) as url:
        form = {"grant_type": "password", "client_id": "mandate-cli", "username": "alice", "password": "demo"}
        token = httpx.post(f"{url}/dev-idp/token", data=form, timeout=10).json()["access_token"]
        with_audit, without = asyncio.run(overhead(settings, token, runs=runs))
    ratio = with_audit / without - 1
    print(f"{'measure':<44}{'figure':>16}{'target':>16}")
    print(f"{'run latency, durable audit (median)':<44}{with_audit * 1000:>13.1f} ms{'':>16}")
    print(f"{'run latency, no-op sink (median)':<44}{without * 1000:>13.1f} ms{'':>16}")
    print(f"{'audit overhead per run':<44}{ratio:>16.1%}{'<= ' + format(OVERHEAD_TARGET, '.0%'):>16}")
    for writers, tenants in ((1, 1), (8, 1), (32, 1), (32, 8)):
        rate = asyncio.run(throughput(settings, writers=writers, tenants=tenants, seconds=seconds))
        label = f"writes, {writers} writer{'s' if writers > 1 else ''}, {tenants} tenant{'s' if tenants > 1 else ''}"
        print(f"{label:<44}{rate:>11,.0f} rec/s{'>= ' + format(THROUGHPUT_TARGET, ','):>16}")


def main(argv: list[str] | None = None) -> None:
    """Start the stack in a temporary directory, measure, print, stop."""
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="ticket runs per variant (default 20)")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput measure (default 5)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mandate-bench-") as tmp:
        settings = DevSettings(env="test", port=free_port(), data_dir=Path(tmp), tools_dir=Path(".tools").absolute(),
                            fga_port=free_port())
        stack = DevStack(settings, fga_grpc_port=free_port())
        resolved = stack.start()
        try:
            _measure(resolved, args.runs, args.seconds)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
