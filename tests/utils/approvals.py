"""The payment demo's steps, shared by the approval API and approver page tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg

from tests.utils.threads import ask, new_thread, resume

PAYMENT = "Send 250 EUR to Initech Services GmbH"
OTP = "000000"


def payments_of(db: psycopg.Connection, thread_id: str) -> list[tuple[Any, ...]]:
    """(subject, actor, audience, body) of the payments made for ``thread_id``."""
    return db.execute(
        "SELECT subject, actor, audience, body FROM mandate.demo_effects WHERE api = 'payments' AND idempotency_key LIKE %s",
        (f"{thread_id}:%",),
    ).fetchall()


def pending_payment(client: httpx.Client, token: Callable[..., str]) -> str:
    """alice asks, steps up with MFA; returns the thread, now waiting for an approver."""
    alice = token("alice")
    thread = new_thread(client, alice)
    assert ask(client, alice, thread, PAYMENT).json()["__interrupt__"][0]["value"]["kind"] == "step_up"
    values = resume(client, token("alice", otp=OTP), thread, {}).json()
    assert values["__interrupt__"][0]["value"]["kind"] == "approval"
    return thread
