"""Drill: OpenFGA stops mid-run. Calls are denied (503 ``authz_unavailable``), nothing is retrieved or
executed, the audit records the denial; once OpenFGA is back the same run continues, with one effect."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate.api.app import create_app
from mandate.audit import build_tracer_provider
from mandate.devstack.openfga import EmbeddedOpenFGA
from mandate.devstack.stack import DevStack
from mandate.runtime.settings import Settings
from tests.drills.stack import dedicated_stack
from tests.utils.approvals import OTP, payments_of, pending_payment
from tests.utils.servers import serve_in_thread
from tests.utils.threads import ask, bearer, last_answer, new_thread, resume
from tests.utils.tokens import login

QUESTION = "Summarize the latest contract terms for ACME."
MSA_PHRASE = "net 45 days"


@pytest.fixture(scope="module")
def drill() -> Iterator[tuple[DevStack, Settings, str]]:
    """Mandate on a stack of its own (this module stops its OpenFGA); yields the stack, settings and URL."""
    with dedicated_stack() as (stack, settings):
        app = create_app(settings, tracer_provider=build_tracer_provider(InMemorySpanExporter()))
        with serve_in_thread(app, port=settings.port) as url:
            yield stack, settings, url


@pytest.fixture()
def client(drill: tuple[DevStack, Settings, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=drill[2], timeout=60) as http:
        yield http


@pytest.fixture()
def db(drill: tuple[DevStack, Settings, str]) -> Iterator[psycopg.Connection]:
    with psycopg.connect(drill[1].database_url, autocommit=True) as conn:
        yield conn


@contextmanager
def openfga_stopped(stack: DevStack) -> Iterator[None]:
    """OpenFGA's process is stopped inside the block and started again (same ports, same store) after it."""
    openfga = stack.openfga
    assert isinstance(openfga, EmbeddedOpenFGA)
    openfga.stop()
    try:
        yield
    finally:
        openfga.start()


def _audit(db: psycopg.Connection, thread: str) -> list[tuple[str, str]]:
    rows = db.execute(
        "SELECT event, decision FROM mandate.audit_records WHERE thread_id = %s ORDER BY tenant, seq", (thread,)
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def _effects(db: psycopg.Connection, api: str, thread: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM mandate.demo_effects WHERE api = %s AND idempotency_key LIKE %s", (api, f"{thread}:%")
    ).fetchone()
    return int(row[0]) if row else 0


def _continue(client: httpx.Client, token: str, thread: str) -> httpx.Response:
    return client.post(f"/threads/{thread}/runs/wait", json={}, headers=bearer(token))


def test_openfga_down_question_retrieves_nothing_is_audited_and_the_run_continues_after_restart(
    drill: tuple[DevStack, Settings, str], client: httpx.Client, db: psycopg.Connection
) -> None:
    stack, _, url = drill
    alice = login(url, "alice")
    thread = new_thread(client, alice)
    with openfga_stopped(stack):
        refused = ask(client, alice, thread, QUESTION)
        assert refused.status_code == 503
        assert refused.json()["code"] == "authz_unavailable"
        assert MSA_PHRASE not in refused.text
        state = client.get(f"/threads/{thread}/state", headers=bearer(alice)).json()
        assert not state["values"].get("context"), "nothing may be retrieved without OpenFGA"
        assert state["next"] == ["retriever"]
    assert ("retrieval.denied", "authz_unavailable") in _audit(db, thread)
    continued = _continue(client, alice, thread)
    assert continued.status_code == 200, continued.text
    assert MSA_PHRASE in last_answer(continued.json())


def test_openfga_down_approved_ticket_does_not_run_and_runs_once_when_continued(
    drill: tuple[DevStack, Settings, str], client: httpx.Client, db: psycopg.Connection
) -> None:
    stack, _, url = drill
    alice = login(url, "alice")
    thread = new_thread(client, alice)
    paused = ask(client, alice, thread, "Open a ticket: badge reader broken")
    assert paused.json()["__interrupt__"][0]["value"]["kind"] == "consent"
    with openfga_stopped(stack):
        refused = resume(client, alice, thread, {"decisions": [{"type": "approve"}]})
        assert (refused.status_code, refused.json()["code"]) == (503, "authz_unavailable")
        assert client.get(f"/threads/{thread}/state", headers=bearer(alice)).json()["next"] == ["tool_executor"]
    assert _effects(db, "tickets", thread) == 0
    events = _audit(db, thread)
    assert ("tool.denied", "authz_unavailable") in events
    assert not [e for e in events if e[0] == "tool.started"], "nothing may start without OpenFGA's decision"

    continued = _continue(client, alice, thread)
    assert continued.status_code == 200, continued.text
    assert "create_ticket: done" in last_answer(continued.json())
    assert _continue(client, alice, thread).status_code in (409, 422)  # nothing left to continue: refused
    assert _effects(db, "tickets", thread) == 1


def test_openfga_down_new_request_is_denied_at_planning_with_a_clear_code(
    drill: tuple[DevStack, Settings, str], client: httpx.Client, db: psycopg.Connection
) -> None:
    stack, _, url = drill
    alice = login(url, "alice")
    thread = new_thread(client, alice)
    with openfga_stopped(stack):
        answered = ask(client, alice, thread, "Open a ticket: projector flickers")
    values: dict[str, Any] = answered.json()
    [outcome] = values["outcomes"]
    assert (outcome["status"], outcome["code"]) == ("denied", "authz_unavailable")
    assert "__interrupt__" not in values  # no consent is asked for a call nobody could authorize
    assert ("tool.denied", "authz_unavailable") in _audit(db, thread)
    assert _effects(db, "tickets", thread) == 0


def test_openfga_down_approver_decision_is_refused_and_counts_once_openfga_is_back(
    drill: tuple[DevStack, Settings, str], client: httpx.Client, db: psycopg.Connection
) -> None:
    stack, _, url = drill
    thread = pending_payment(client, lambda user, **kw: login(url, user, **kw))
    bob = login(url, "bob", otp=OTP)
    [approval] = [a for a in client.get("/approvals", headers=bearer(bob)).json() if a["thread_id"] == thread]
    decision = {"type": "approve", "comment": "invoice checked"}
    with openfga_stopped(stack):
        refused = client.post(f"/approvals/{approval['id']}/decision", json=decision, headers=bearer(bob))
        assert (refused.status_code, refused.json()["code"]) == (503, "authz_unavailable")
    assert payments_of(db, thread) == []
    decided = client.post(f"/approvals/{approval['id']}/decision", json=decision, headers=bearer(bob))
    assert decided.status_code == 200, decided.text
    assert len(payments_of(db, thread)) == 1
