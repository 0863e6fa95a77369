"""``python -m bench.costs``: what each control costs a run, from OpenTelemetry spans.

Mandate is served in this process (its app, on the embedded Postgres 18 and OpenFGA, with the
``examples/bench_agent`` project) with an in-memory span exporter. Besides the spans Mandate emits
itself (``mandate.authz.batch_check``, ``mandate.retrieve``, ``mandate.token_exchange``), the bench
wraps, for the time of the measurement only, the methods that carry each other control in a span of
its own: token verification, the revocation list, the token vault, the call ledger, audit writes,
checkpoint writes (with their lease check) and the run's event log. Then it makes sequential runs
with the official SDK and prints, per run, how many calls of each kind were made and the time they
took (wall time inside the call: with one run at a time, what the run waits for).

Two flows: ``bench`` (the bench agent: three model calls, two gated tool calls) and ``question``
(Mandate's built-in ``mandate`` graph answering from authorized retrieval).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from langgraph_sdk import get_client
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Summarize the latest contract terms for ACME."

# (category, module, class, methods): the controls' carriers, each wrapped in a span while measuring.
WRAPPED: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("token verification", "mandate.auth.verifier", "TokenVerifier", ("verify",)),
    ("revocation check", "mandate.runtime.sessions", "SessionStore", ("check_not_revoked",)),
    ("token vault", "mandate.auth.vault", "TokenVaultStore", ("put", "get")),
    ("call ledger", "mandate.runtime.ledger", "CallLedgerStore", ("open", "get", "current", "start_execution", "finish_execution")),
    ("audit writes", "mandate.audit.log", "AuditLog", ("record", "record_denial")),
    ("checkpoint writes", "mandate.runtime.fenced_saver", "LeaseFencedSaver", ("aput", "aput_writes")),
    ("  of which lease checks", "mandate.runtime.fenced_saver", "LeaseFencedSaver", ("_check_lease",)),
    ("run event log", "mandate.runtime.run_events", "RunEventLog", ("append",)),
]
OWN_SPANS = {
    "mandate.authz.batch_check": "OpenFGA batch checks",
    "mandate.authz.check": "  OpenFGA tuples decided",
    "mandate.retrieve": "retrieval",
    "mandate.token_exchange": "token exchange",
}
ORDER = [
    "token verification", "revocation check", "token vault", "OpenFGA batch checks", "  OpenFGA tuples decided",
    "call ledger", "audit writes", "checkpoint writes", "  of which lease checks", "run event log", "retrieval",
    "token exchange",
]


@contextmanager
def instrumented(provider: TracerProvider) -> Iterator[None]:
    """Wrap each carrier of :data:`WRAPPED` in a span named ``bench <category>``; undone on exit."""
    import importlib

    tracer = provider.get_tracer("bench.costs")
    undo = []
    for category, module, name, methods in WRAPPED:
        cls = getattr(importlib.import_module(module), name)
        for method in methods:
            original = cls.__dict__[method]

            def wrapper(original: Any = original, category: str = category) -> Any:
                @functools.wraps(original)
                async def timed(*args: Any, **kwargs: Any) -> Any:
                    with tracer.start_as_current_span(f"bench {category}"):
                        return await original(*args, **kwargs)

                return timed

            setattr(cls, method, wrapper())
            undo.append((cls, method, original))
    try:
        yield
    finally:
        for cls, method, original in undo:
            setattr(cls, method, original)


def per_run(spans: list[Any], runs: int) -> dict[str, tuple[float, float]]:
    """Category → (calls per run, milliseconds per run)."""
    calls: dict[str, int] = defaultdict(int)
    nanos: dict[str, int] = defaultdict(int)
    for span in spans:
        category = span.name[len("bench "):] if span.name.startswith("bench ") else OWN_SPANS.get(span.name)
        if category is None:
            continue
        calls[category] += 1
        nanos[category] += span.end_time - span.start_time
    return {c: (calls[c] / runs, nanos[c] / runs / 1e6) for c in calls}


async def _flow(url: str, token: str, flow: str, runs: int, rng: random.Random) -> list[float]:
    from bench.peers.double import QUESTION as CONVERT
    from bench.peers.double import expected_answer

    import time

    seconds = []
    async with get_client(url=url, api_key=None, headers={"Authorization": f"Bearer {token}"}) as client:
        for _ in range(runs):
            thread = await client.threads.create()
            amount = rng.randint(1, 999)
            text, assistant = (CONVERT.format(amount=amount), "bench") if flow == "bench" else (QUESTION, "mandate")
            began = time.perf_counter()
            values = await client.runs.wait(thread["thread_id"], assistant, input={"messages": [{"role": "user", "content": text}]})
            seconds.append(time.perf_counter() - began)
            answer = values["messages"][-1]["content"]  # type: ignore[index]
            expected = expected_answer(amount) if flow == "bench" else "net 45"
            if expected not in answer:
                raise SystemExit(f"unexpected answer in the {flow} flow: {answer!r}")
    return seconds


def measure(url: str, token: str, exporter: InMemorySpanExporter, provider: TracerProvider, *, flow: str, runs: int) -> tuple[dict[str, tuple[float, float]], float]:
    """Per-run costs of ``flow`` over ``runs`` sequential runs (after two unmeasured ones), and the median run in ms."""
    import statistics

    rng = random.Random(14)
    asyncio.run(_flow(url, token, flow, 2, rng))
    exporter.clear()
    with instrumented(provider):
        seconds = asyncio.run(_flow(url, token, flow, runs, rng))
    return per_run(list(exporter.get_finished_spans()), runs), statistics.median(seconds) * 1000


def table(results: dict[str, tuple[dict[str, tuple[float, float]], float]]) -> str:
    flows = list(results)
    head = ["control (per run)", *(f"{f}: calls" for f in flows), *(f"{f}: ms" for f in flows)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for category in ORDER:
        cells = [f"{results[f][0].get(category, (0.0, 0.0))[0]:.1f}" for f in flows]
        cells += [f"{results[f][0].get(category, (0.0, 0.0))[1]:.1f}" for f in flows]
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    lines.append("| run p50 (client, runs.wait) | " + " | ".join([""] * len(flows)) + " | "
                 + " | ".join(f"{results[f][1]:.1f}" for f in flows) + " |")
    return "\n".join(lines)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.costs", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="sequential runs per flow (default 30)")
    parser.add_argument("--flows", nargs="*", default=["bench", "question"], choices=["bench", "question"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from bench.peers import servers
    from mandate.api.app import create_app
    from mandate.audit import build_tracer_provider
    from mandate.devstack.stack import DevStack
    from mandate.runtime.settings import DevSettings
    from tests.utils.servers import free_port, serve_in_thread
    from tests.utils.tokens import login

    args = parse_arguments(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="mandate-bench-costs-"))
    settings = DevSettings(env="test", port=free_port(), data_dir=data_dir, fga_port=free_port(), tools_dir=ROOT / ".tools")
    stack = DevStack(settings, fga_grpc_port=free_port())
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider(exporter)
    load = os.getloadavg()
    results = {}
    try:
        resolved = stack.start()
        with ExitStack() as cleanup:
            model_port = free_port()
            double = servers.start_double(port=model_port, log=data_dir / "double.log")
            cleanup.callback(double.terminate)
            os.environ.update({"OPENAI_BASE_URL": f"http://127.0.0.1:{model_port}/v1", "OPENAI_API_KEY": "sk-bench-double"})
            for flow in args.flows:
                # The bench agent is a project of its own; the question flow is the built-in graphs'.
                port = free_port()
                app_settings = DevSettings(
                    env="test", port=port, data_dir=data_dir, database_url=resolved.database_url,
                    fga_api_url=resolved.fga_api_url, project=servers.EXAMPLE / "langgraph.json" if flow == "bench" else None,
                )
                with serve_in_thread(create_app(app_settings, tracer_provider=provider), port=port) as url:
                    results[flow] = measure(url, login(url, "alice"), exporter, provider, flow=flow, runs=args.runs)
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"{args.runs} sequential runs per flow, Mandate in-process; load average before {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}, "
          f"after {'/'.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(table(results))
    return 0
