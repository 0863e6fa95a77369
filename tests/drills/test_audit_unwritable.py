"""Drill: the audit store becomes unwritable (INSERT revoked from the service's database role).
No tool runs, no decision is recorded without its audit record, the user gets a clear error, and
the failure shows in the logs and spans; once the grant is back, the same run continues, the
decision is recorded with its audit record, and the tool runs once."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from psycopg.conninfo import make_conninfo

from mandate.api.app import create_app
from mandate.audit import build_tracer_provider
from mandate.runtime.settings import Settings
from tests.audit.helpers import audit_store_refuses
from tests.drills.stack import dedicated_stack
from tests.utils.servers import serve_in_thread
from tests.utils.threads import ask, last_answer, new_thread, resume
from tests.utils.tokens import login

APP_ROLE = "mandate_drill_app"
"""The service's own login role: not a superuser, so a REVOKE binds it."""
GRANT_APP_ROLE = f"""
CREATE ROLE {APP_ROLE} LOGIN;
GRANT CREATE, CONNECT ON DATABASE mandate TO {APP_ROLE};
GRANT USAGE, CREATE ON SCHEMA mandate, public TO {APP_ROLE};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA mandate, public TO {APP_ROLE};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA mandate, public TO {APP_ROLE};
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA mandate, public TO {APP_ROLE};
"""
REVOKE_AUDIT_INSERT = f"REVOKE INSERT ON mandate.audit_records FROM {APP_ROLE}"
GRANT_AUDIT_INSERT = f"GRANT INSERT ON mandate.audit_records TO {APP_ROLE}"


@pytest.fixture(scope="module")
def drill() -> Iterator[tuple[Settings, str, InMemorySpanExporter]]:
    """Mandate connected as its own role on a stack of its own; yields the admin settings, URL and spans."""
    with dedicated_stack() as (_, admin):
        # A first start as the superuser creates the schema and seeds the demo world; then the
        # service runs as its own role, as it should in production.
        with serve_in_thread(create_app(admin, tracer_provider=build_tracer_provider(InMemorySpanExporter()))):
            pass
        with psycopg.connect(admin.database_url, autocommit=True) as conn:
            conn.execute(GRANT_APP_ROLE)
        as_app = admin.model_copy(update={"database_url": make_conninfo(admin.database_url, user=APP_ROLE)})
        spans = InMemorySpanExporter()
        with serve_in_thread(create_app(as_app, tracer_provider=build_tracer_provider(spans)), port=admin.port) as url:
            yield admin, url, spans


def test_audit_insert_revoked_no_tool_runs_the_user_gets_audit_unavailable_and_logs_and_spans_show_it(
    drill: tuple[Settings, str, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    admin, url, spans = drill
    alice = login(url, "alice")
    with psycopg.connect(admin.database_url, autocommit=True) as db, httpx.Client(base_url=url, timeout=60) as client:
        thread = new_thread(client, alice)
        paused = ask(client, alice, thread, "Open a ticket: fire door propped open")
        assert paused.json()["__interrupt__"][0]["value"]["kind"] == "consent"

        db.execute(REVOKE_AUDIT_INSERT)
        try:
            with caplog.at_level(logging.WARNING, logger="mandate"):
                refused = resume(client, alice, thread, {"decisions": [{"type": "approve"}]})
        finally:
            db.execute(GRANT_AUDIT_INSERT)
        assert (refused.status_code, refused.json()["code"]) == (503, "audit_unavailable")
        assert "InsufficientPrivilege" not in refused.text  # the database's words stay in the log
        assert _tickets(db, thread) == 0
        assert any("audit_unavailable" in r.getMessage() and "InsufficientPrivilege" in r.getMessage() for r in caplog.records)
        failed = [
            s for s in spans.get_finished_spans()
            if s.attributes and s.attributes.get("gen_ai.conversation.id") == thread
            and s.attributes.get("mandate.error.code") == "audit_unavailable"
        ]
        assert failed, "the span of the node whose audit write failed must say so"
        # The decision and its audit record are one transaction: neither was written.
        assert _decisions(db, thread) == (["pending"], 0)

        # The run still waits at its consent: alice answers again.
        continued = resume(client, alice, thread, {"decisions": [{"type": "approve"}]})
        assert continued.status_code == 200, continued.text
        assert "create_ticket: done" in last_answer(continued.json())
        assert _tickets(db, thread) == 1
        started = db.execute(
            "SELECT count(*) FROM mandate.audit_records WHERE thread_id = %s AND event = 'tool.started'", (thread,)
        ).fetchone()
        assert started == (1,)  # the tool ran once, after its write-ahead record
        assert _decisions(db, thread) == (["approved"], 1)


def test_the_write_ahead_record_of_an_approved_tool_fails_and_the_tool_does_not_run(
    drill: tuple[Settings, str, InMemorySpanExporter],
) -> None:
    admin, url, _ = drill
    alice = login(url, "alice")
    with psycopg.connect(admin.database_url, autocommit=True) as db, httpx.Client(base_url=url, timeout=60) as client:
        thread = new_thread(client, alice)
        ask(client, alice, thread, "Open a ticket: loading dock light is out")
        with audit_store_refuses(db, "tool.started"):  # only the write-ahead record fails; the decision is written
            refused = resume(client, alice, thread, {"decisions": [{"type": "approve"}]})
        assert refused.status_code == 200, refused.text
        [outcome] = refused.json()["outcomes"]
        assert (outcome["status"], outcome["code"]) == ("failed", "audit_unavailable")
        assert _tickets(db, thread) == 0
        assert _decisions(db, thread) == (["approved"], 1)  # decided and audited; only the effect was refused


def _decisions(db: psycopg.Connection, thread: str) -> tuple[list[str], int]:
    """The statuses of the thread's ledger rows, and how many ``consent.decided`` records it has."""
    statuses = [row[0] for row in db.execute("SELECT status FROM mandate.tool_calls WHERE thread_id = %s", (thread,))]
    audited = db.execute(
        "SELECT count(*) FROM mandate.audit_records WHERE thread_id = %s AND event = 'consent.decided'", (thread,)
    ).fetchone()
    assert audited is not None
    return statuses, int(audited[0])


def _tickets(db: psycopg.Connection, thread: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM mandate.demo_effects WHERE api = 'tickets' AND idempotency_key LIKE %s", (f"{thread}:%",)
    ).fetchone()
    return int(row[0]) if row else 0
