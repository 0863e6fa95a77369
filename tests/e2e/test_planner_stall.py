"""One user's pathological messages do not stall the server for everyone else.

Runs execute on the server's event loop, so a run that spends seconds in one CPU-bound step (the
offline planner's former patterns backtracked super-linearly: minutes for ``send 1 `` repeated at
this length) holds every other request, ``GET /ok`` included, until it is done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.utils.threads import bearer

MAX_MESSAGE_CHARS = 20_000
"""The longest message the HTTP edge accepts."""
PROBE_BOUND = 5.0
"""Seconds between two answers to ``GET /ok`` while the runs are planned. The stalls this guards
against lasted minutes; a loaded CI machine alone has left 1.3 s between two answers."""
PATHOLOGICAL_UNITS = ("send 1 ", "pay $1 ", "wire 1 EUR\n", "open ", "submit a ")
"""Repeated to the longest message, each is planned as a question, after scans that the former
patterns made cubic (the first three) or quadratic (the others)."""


def _repeat(unit: str) -> str:
    return (unit * (MAX_MESSAGE_CHARS // len(unit) + 1))[:MAX_MESSAGE_CHARS]


async def _run(client: httpx.AsyncClient, text: str) -> httpx.Response:
    thread = await client.post("/threads", json={})
    assert thread.status_code == 200, thread.text
    body = {"assistant_id": "mandate", "input": {"messages": [{"role": "user", "content": text}]}}
    return await client.post(f"/threads/{thread.json()['thread_id']}/runs/wait", json=body)


async def _probe_while(base_url: str, work: asyncio.Future[Any]) -> list[float]:
    """Seconds from each answer to ``GET /ok`` to the next (the first: from the start), until ``work`` is done.

    The server runs in this process, so while it holds the GIL this client cannot send either: the
    gap between answers sees a stall wherever it falls, where the latency of one request would see
    it only if that request was already in flight.
    """
    gaps = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as probe:
        last = time.perf_counter()
        while not work.done():
            response = await probe.get("/ok")
            gaps.append(time.perf_counter() - last)
            last = time.perf_counter()
            assert response.status_code == 200, response.text
            await asyncio.sleep(0.05)
    return gaps


async def test_pathological_messages_leave_the_server_answering_others(
    base_url: str, token: Callable[..., str]
) -> None:
    messages = [_repeat(unit) for unit in PATHOLOGICAL_UNITS]
    async with httpx.AsyncClient(base_url=base_url, timeout=300, headers=bearer(token("alice"))) as client:
        runs = asyncio.gather(*(_run(client, text) for text in messages))
        gaps = await _probe_while(base_url, runs)
        responses = await runs

    for text, response in zip(messages, responses, strict=True):
        assert response.status_code == 200, response.text[:500]
        values = response.json()
        assert (values["question"], values["proposed"]) == (text.strip(), [])
    assert gaps, "no probe ran while the runs were planned"
    assert max(gaps) < PROBE_BOUND, f"GET /ok went unanswered for {max(gaps):.2f} s while the runs were planned"
