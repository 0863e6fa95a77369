"""The one client every server is driven with: the official ``langgraph-sdk``, one new thread per run."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from langgraph_sdk import get_client

from bench.peers.double import QUESTION, expected_answer

RunOnce = Callable[[int], Awaitable[float]]
"""Makes one run asking about ``amount``; returns the seconds the run itself took (after its thread exists)."""


@dataclass(kw_only=True)
class Phase:
    """One measured phase: ``runs`` runs with ``concurrency`` in flight."""

    concurrency: int
    runs: int
    wall: float
    latencies: list[float]
    cpu_seconds: float

    @property
    def runs_per_second(self) -> float:
        return self.runs / self.wall

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000

    @property
    def cpu_ms_per_run(self) -> float:
        return self.cpu_seconds / self.runs * 1000


@dataclass(kw_only=True)
class Result:
    name: str
    note: str
    phases: dict[int, Phase] = field(default_factory=dict)
    error: str | None = None


class WrongAnswerError(AssertionError):
    pass


def sdk_runner(url: str, headers: Callable[[int], dict[str, str]], assistant: str) -> Callable[[], Any]:
    """A factory of per-client run functions over the SDK (``threads.create`` then ``runs.wait``)."""

    def new_client() -> tuple[Any, RunOnce]:
        clients: dict[int, Any] = {}

        async def run_once(amount: int) -> float:
            slot = amount % 2
            if slot not in clients:
                clients[slot] = get_client(url=url, api_key=None, headers=headers(slot), timeout=300)
            client = clients[slot]
            thread = await client.threads.create()
            began = time.perf_counter()
            values = await client.runs.wait(
                thread["thread_id"], assistant, input={"messages": [{"role": "user", "content": QUESTION.format(amount=amount)}]}
            )
            seconds = time.perf_counter() - began
            check_answer(values, amount)
            return seconds

        async def close() -> None:
            for client in clients.values():
                await client.aclose()

        return close, run_once

    return new_client


def check_answer(values: Any, amount: int) -> None:
    answer = values["messages"][-1]["content"] if isinstance(values, dict) and values.get("messages") else None
    if answer != expected_answer(amount):
        raise WrongAnswerError(f"run for {amount}: expected {expected_answer(amount)!r}, got {str(values)[:500]!r}")


async def measure(
    new_client: Callable[[], Any], cpu: Callable[[], float], *, concurrency: int, runs: int, rng: random.Random
) -> Phase:
    """``runs`` runs by ``concurrency`` clients, each making its runs one after another."""
    amounts = [rng.randint(1, 999) for _ in range(runs)]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for amount in amounts:
        queue.put_nowait(amount)
    latencies: list[float] = []
    workers = [new_client() for _ in range(concurrency)]

    async def client(run_once: RunOnce) -> None:
        while not queue.empty():
            latencies.append(await run_once(queue.get_nowait()))

    cpu_before, began = cpu(), time.perf_counter()
    try:
        await asyncio.gather(*(client(run_once) for _, run_once in workers))
    finally:
        wall = time.perf_counter() - began
        cpu_after = cpu()
        for close, _ in workers:
            await close()
    return Phase(concurrency=concurrency, runs=runs, wall=wall, latencies=latencies, cpu_seconds=cpu_after - cpu_before)
