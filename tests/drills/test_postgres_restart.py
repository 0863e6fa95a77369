"""Drill: Postgres restarts while runs wait at interrupts. Afterwards every thread resumes where it
was, and no effect happens twice."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate.api.app import create_app
from mandate.audit import build_tracer_provider
from mandate.devstack.postgres import EmbeddedPostgres
from mandate.devstack.stack import DevStack
from mandate.runtime.settings import Settings
from tests.drills.stack import dedicated_stack
from tests.utils.approvals import OTP, PAYMENT, payments_of, pending_payment
from tests.utils.servers import serve_in_thread
from tests.utils.threads import ask, bearer, last_answer, new_thread, resume
from tests.utils.tokens import login


@pytest.fixture(scope="module")
def drill() -> Iterator[tuple[DevStack, Settings, str]]:
    """Mandate on a stack of its own (this module restarts its Postgres); yields the stack, settings and URL."""
    with dedicated_stack() as (stack, settings):
        app = create_app(settings, tracer_provider=build_tracer_provider(InMemorySpanExporter()))
        with serve_in_thread(app, port=settings.port) as url:
            yield stack, settings, url


def _interrupt_kind(values: dict[str, Any]) -> str:
    return str(values["__interrupt__"][0]["value"]["kind"])


def _waiting_at(client: httpx.Client, token: str, thread: str) -> tuple[list[str], str]:
    """Where the thread waits: its next nodes and the kind of its interrupt."""
    state = client.get(f"/threads/{thread}/state", headers=bearer(token)).json()
    [task] = [t for t in state["tasks"] if t["interrupts"]]
    return state["next"], task["interrupts"][0]["value"]["kind"]


def _tickets(db: psycopg.Connection, thread: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM mandate.demo_effects WHERE api = 'tickets' AND idempotency_key LIKE %s", (f"{thread}:%",)
    ).fetchone()
    return int(row[0]) if row else 0


def test_postgres_restart_every_waiting_thread_resumes_where_it_was_with_one_effect(
    drill: tuple[DevStack, Settings, str],
) -> None:
    stack, settings, url = drill
    token: Callable[..., str] = lambda user, **kw: login(url, user, **kw)  # noqa: E731 - as tests/conftest.py's
    alice, dave = token("alice"), token("dave")
    with httpx.Client(base_url=url, timeout=60) as client:
        approved_ticket, rejected_ticket, unstepped_payment = (new_thread(client, t) for t in (alice, dave, alice))
        assert _interrupt_kind(ask(client, alice, approved_ticket, "Open a ticket: lift stuck").json()) == "consent"
        assert _interrupt_kind(ask(client, dave, rejected_ticket, "Open a ticket: desk wobbles").json()) == "consent"
        assert _interrupt_kind(ask(client, alice, unstepped_payment, PAYMENT).json()) == "step_up"
        awaiting_approver = pending_payment(client, token)
        owners = {approved_ticket: alice, rejected_ticket: dave, unstepped_payment: alice, awaiting_approver: alice}
        before = {thread: _waiting_at(client, owner, thread) for thread, owner in owners.items()}

        postgres = stack.postgres
        assert isinstance(postgres, EmbeddedPostgres)
        old_pid = postgres.pid
        postgres.stop()
        assert postgres.pid is None
        postgres.start()
        assert postgres.pid not in (None, old_pid)

        assert {thread: _waiting_at(client, owner, thread) for thread, owner in owners.items()} == before
        done = resume(client, alice, approved_ticket, {"decisions": [{"type": "approve"}]})
        assert done.status_code == 200, done.text
        assert "create_ticket: done" in last_answer(done.json())
        declined = resume(client, dave, rejected_ticket, {"decisions": [{"type": "reject"}]})
        assert declined.status_code == 200, declined.text
        stepped = resume(client, token("alice", otp=OTP), unstepped_payment, {})
        assert _interrupt_kind(stepped.json()) == "approval"
        bob = token("bob", otp=OTP)
        [approval] = [a for a in client.get("/approvals", headers=bearer(bob)).json() if a["thread_id"] == awaiting_approver]
        decided = client.post(f"/approvals/{approval['id']}/decision", json={"type": "approve"}, headers=bearer(bob))
        assert decided.status_code == 200, decided.text

        replayed = resume(client, alice, approved_ticket, {"decisions": [{"type": "approve"}]})
        assert replayed.status_code in (409, 422), "a replayed approval must be refused, not run again"

    with psycopg.connect(settings.database_url, autocommit=True) as db:
        assert _tickets(db, approved_ticket) == 1
        assert _tickets(db, rejected_ticket) == 0
        assert len(payments_of(db, awaiting_approver)) == 1
        assert payments_of(db, unstepped_payment) == []  # it waits for its approver, as before the restart
