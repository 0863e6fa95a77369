"""Driving threads over HTTP the way a client does."""

from __future__ import annotations

from typing import Any

import httpx


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def new_thread(client: httpx.Client, token: str) -> str:
    """Create a thread; returns its id."""
    response = client.post("/threads", json={}, headers=bearer(token))
    assert response.status_code == 200, response.text
    return str(response.json()["thread_id"])


def ask(client: httpx.Client, token: str, thread_id: str, text: str) -> httpx.Response:
    """Start a run with one user message and wait for it."""
    body = {"assistant_id": "mandate", "input": {"messages": [{"role": "user", "content": text}]}}
    return client.post(f"/threads/{thread_id}/runs/wait", json=body, headers=bearer(token))


def resume(client: httpx.Client, token: str, thread_id: str, value: Any) -> httpx.Response:
    """Resume a paused run with ``value`` (on the thread's own assistant)."""
    body = {"command": {"resume": value}}
    return client.post(f"/threads/{thread_id}/runs/wait", json=body, headers=bearer(token))


def last_answer(values: dict[str, Any]) -> str:
    """The text of the assistant's last message."""
    return str(values["messages"][-1]["content"])
