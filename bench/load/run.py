"""The load driver: virtual users over two tenants for a bounded time and count, then the report.

:func:`drive` runs against a Mandate already served on loopback (the CI test passes the session's
app); :func:`main` starts the embedded stack in a temporary directory, serves Mandate on loopback
and drives it. Both refuse any address that is not loopback. Figures are printed, never asserted;
the exit status is 1 if anything leaked, ran twice, or failed.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
from tqdm import tqdm

from bench.load.scenarios import KINDS, PAYER, PERSONAS, SCENARIOS, Client, Tally

__all__ = ["DEFAULT_MIX", "LoadReport", "drive", "main", "parse_mix", "scenario_of"]

DEFAULT_MIX = {"question": 5, "ticket": 3, "payment": 2, "cross_tenant_read": 1}
"""Relative weights of the scenarios."""
REQUEST_TIMEOUT_S = 120.0
"""Per request: a run that takes longer is counted as an error of its kind."""

COUNT_EFFECTS = """
SELECT split_part(idempotency_key, ':', 1) AS thread, count(*) AS effects
FROM mandate.demo_effects WHERE split_part(idempotency_key, ':', 1) = ANY(%s) GROUP BY 1
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadReport:
    """What one load run did and found."""

    seconds: float
    scenarios: int
    tally: Tally
    duplicate_effects: int
    """Effects beyond one for a thread: must be 0."""
    unreported_effects: list[str]
    """Threads whose effects in the database differ from those their outcomes reported: must be none."""

    @property
    def requests(self) -> int:
        return sum(len(times) for times in self.tally.latencies.values())

    @property
    def error_count(self) -> int:
        return sum(self.tally.errors.values())

    @property
    def clean(self) -> bool:
        """Nothing leaked, nothing ran twice, nothing failed."""
        return not (self.tally.leaks or self.tally.replays_run or self.duplicate_effects or self.unreported_effects
                    or self.error_count)


def parse_mix(text: str) -> dict[str, int]:
    """``question=5,ticket=3`` → weights; unknown scenarios and negative weights are refused."""
    mix: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in SCENARIOS or not weight.isdigit():
            raise argparse.ArgumentTypeError(f"{part!r}: write name=weight with a name of {', '.join(SCENARIOS)}")
        mix[name] = int(weight)
    if not any(mix.values()):
        raise argparse.ArgumentTypeError("the mix needs at least one scenario with a weight above 0")
    return mix


def scenario_of(n: int, mix: dict[str, int], *, seed: int) -> str:
    """The scenario number ``n`` runs: drawn from ``mix`` by ``seed`` and ``n`` alone, whoever runs it."""
    return random.Random(f"{seed}:{n}").choices(list(mix), list(mix.values()))[0]


def _require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"load is only ever sent to loopback; {url!r} is not")


async def drive(
    url: str,
    database_url: str,
    *,
    users: int,
    seconds: float,
    max_scenarios: int,
    mix: dict[str, int] = DEFAULT_MIX,
    seed: int = 0,
    progress: bool = True,
) -> LoadReport:
    """Run ``users`` virtual users against ``url`` until ``seconds`` pass or ``max_scenarios`` start.

    Args:
        url: Mandate's base URL (loopback only), with the dev issuer and the demo world.
        database_url: Its database, read after the run to count effects per thread.
        users: Concurrent virtual users, spread round-robin over the personas of both tenants.
        seconds: Time bound: no scenario starts after it.
        max_scenarios: Count bound: at most this many scenarios start, over all users.
        mix: Relative weights of the scenarios.
        seed: Seed of the scenario choice: scenario ``n`` is the same in every run with this seed.
        progress: Show a progress bar on stderr.

    Raises:
        ValueError: ``url`` is not a loopback address.
    """
    _require_loopback(url)
    tally = Tally()
    started = time.monotonic()
    deadline = started + seconds
    next_scenario = 0
    bar = tqdm(total=max_scenarios, desc="scenarios", unit="sc", disable=not progress, file=sys.stderr)

    async def user(index: int, http: httpx.AsyncClient) -> None:
        nonlocal next_scenario
        persona = PERSONAS[index % len(PERSONAS)]
        client = Client(http=http, tally=tally)
        while time.monotonic() < deadline and next_scenario < max_scenarios:
            n, next_scenario = next_scenario, next_scenario + 1
            name = scenario_of(n, mix, seed=seed)
            await SCENARIOS[name](client, PAYER if name == "payment" else persona, n)
            bar.update(1)
            bar.set_postfix(requests=sum(len(t) for t in tally.latencies.values()), errors=sum(tally.errors.values()))

    limits = httpx.Limits(max_connections=users * 2, max_keepalive_connections=users * 2)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as http:
            await asyncio.gather(*(user(i, http) for i in range(users)))
    finally:
        bar.close()
    elapsed = time.monotonic() - started
    duplicates, unreported = _check_effects(database_url, tally)
    return LoadReport(
        seconds=elapsed, scenarios=next_scenario, tally=tally, duplicate_effects=duplicates,
        unreported_effects=unreported,
    )


def _check_effects(database_url: str, tally: Tally) -> tuple[int, list[str]]:
    """Effects per thread in the database, against one per thread and against what the users were told."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(COUNT_EFFECTS, (list(tally.threads),)).fetchall()
    made = {str(thread): int(count) for thread, count in rows}
    duplicates = sum(count - 1 for count in made.values() if count > 1)
    unreported = sorted(t for t in tally.threads if made.get(t, 0) != len(tally.effects_seen.get(t, ())))
    return duplicates, unreported


def _percentile_ms(times: list[float], q: int) -> float:
    if len(times) == 1:
        return times[0] * 1000
    return statistics.quantiles(times, n=100, method="inclusive")[q - 1] * 1000


def print_report(report: LoadReport, *, users: int) -> None:
    """The figures: throughput, latency percentiles and errors per request kind, and the checks."""
    tally = report.tally
    print(f"{users} users over 2 tenants, {report.scenarios} scenarios in {report.seconds:.1f} s: "
          f"{report.requests / report.seconds:.1f} requests/s, {report.scenarios / report.seconds:.2f} scenarios/s")
    print(f"{'kind':<20}{'requests':>10}{'errors':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    for kind in (*KINDS, *sorted(set(tally.latencies) - set(KINDS))):
        times = tally.latencies.get(kind, [])
        if not times and not tally.errors.get(kind):
            continue
        cells = [f"{_percentile_ms(times, q):>10.1f}" for q in (50, 95, 99)] if times else [f"{'-':>10}"] * 3
        print(f"{kind:<20}{len(times):>10}{tally.errors.get(kind, 0):>8}{''.join(cells)}")
    print(f"cross-tenant or unauthorized leaks: {len(tally.leaks)}")
    print(f"duplicate effects: {report.duplicate_effects}; replayed decisions that ran again: {len(tally.replays_run)}")
    print(f"threads whose effects differ from what their user was told: {len(report.unreported_effects)}")
    if tally.answered:
        print(f"questions answered with their document (alice, carol): {tally.recalled} of {tally.answered}")
    for line in tally.leaks[:10] + tally.error_samples[:10] + report.unreported_effects[:10]:
        print(f"  {line}")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="Load Mandate on loopback with concurrent users over two tenants (questions, tickets with "
        "consent, payments with approval); print throughput, p50/p95/p99 and errors per request kind, and "
        "check for cross-tenant leaks and duplicate effects. Starts its own embedded stack in a temporary "
        "directory. Exit status 1 if anything leaked, ran twice or failed.",
    )
    parser.add_argument("--users", type=int, default=8, help="concurrent virtual users (default 8)")
    parser.add_argument("--seconds", type=float, default=180.0, help="no scenario starts after this (default 180)")
    parser.add_argument("--max-scenarios", type=int, default=5000, help="no more scenarios than this (default 5000)")
    parser.add_argument("--mix", type=parse_mix, default=DEFAULT_MIX,
                        help="scenario weights (default question=5,ticket=3,payment=2,cross_tenant_read=1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenario choice (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.users < 1 or args.seconds <= 0 or args.max_scenarios < 1:
        parser.error("--users, --seconds and --max-scenarios must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    """Start the stack in a temporary directory, serve Mandate on loopback, drive it, print, stop."""
    args = parse_arguments(argv)
    # Imported here: ``--help`` stays instant, and the stack's modules load only for a real run.
    from opentelemetry.sdk.trace import TracerProvider

    from mandate.api.app import create_app
    from mandate.devstack.stack import DevStack
    from mandate.runtime.settings import DevSettings
    from tests.utils.servers import free_port, serve_in_thread

    with tempfile.TemporaryDirectory(prefix="mandate-load-") as tmp:
        settings = DevSettings(env="test", port=free_port(), data_dir=Path(tmp), tools_dir=Path(".tools").absolute(),
                               fga_port=free_port())
        stack = DevStack(settings, fga_grpc_port=free_port())
        resolved = stack.start()
        try:
            with serve_in_thread(create_app(resolved, tracer_provider=TracerProvider()), port=resolved.port) as url:
                report = asyncio.run(drive(
                    url, resolved.database_url, users=args.users, seconds=args.seconds,
                    max_scenarios=args.max_scenarios, mix=args.mix, seed=args.seed, progress=not args.no_progress,
                ))
        finally:
            stack.stop()
    print_report(report, users=args.users)
    return 0 if report.clean else 1
