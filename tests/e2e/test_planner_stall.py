"""One user's pathological messages are planned, and the server answers others meanwhile.

Runs execute on the server's event loop, so a run that spends seconds in one CPU-bound step (the
offline planner's former patterns backtracked super-linearly: minutes for ``send 1 `` repeated at
this length) holds every other request, ``GET /ok`` included, until it is done. That planning's
work grows linearly with the message is asserted in ``tests/nodes/test_planner.py`` (as a ratio of
work, never a duration); here the messages go through the whole server at the edge's limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from tests.utils.threads import bearer

MAX_MESSAGE_CHARS = 20_000
"""The longest message the HTTP edge accepts."""
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


async def _probe_while(base_url: str, work: asyncio.Future[Any]) -> int:
    """How many times ``GET /ok`` answered 200 until ``work`` was done (it is asked again and again)."""
    answers = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as probe:
        while not work.done():
            response = await probe.get("/ok")
            assert response.status_code == 200, response.text
            answers += 1
            await asyncio.sleep(0.05)
    return answers


async def test_pathological_messages_leave_the_server_answering_others(
    base_url: str, token: Callable[..., str]
) -> None:
    messages = [_repeat(unit) for unit in PATHOLOGICAL_UNITS]
    async with httpx.AsyncClient(base_url=base_url, timeout=300, headers=bearer(token("alice"))) as client:
        runs = asyncio.gather(*(_run(client, text) for text in messages))
        answers = await _probe_while(base_url, runs)
        responses = await runs

    for text, response in zip(messages, responses, strict=True):
        assert response.status_code == 200, response.text[:500]
        values = response.json()
        assert (values["question"], values["proposed"]) == (text.strip(), [])
    assert answers, "no probe ran while the runs were planned"
