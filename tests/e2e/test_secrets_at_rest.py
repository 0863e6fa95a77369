"""After real runs (question, consent + delegated tool call, step-up), no token is stored or traced."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from psycopg import sql

from tests.utils.threads import ask, new_thread, resume

JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")


def _run_every_flow(client: httpx.Client, token: Callable[..., str]) -> list[str]:
    alice = token("alice")
    ask(client, alice, new_thread(client, alice), "Summarize the latest contract terms for ACME.")
    thread = new_thread(client, alice)
    ask(client, alice, thread, "Open a ticket: keyboard missing keys")
    resume(client, alice, thread, {"decisions": [{"type": "approve"}]})
    ask(client, alice, new_thread(client, alice), "Send 120 EUR to Initech Services GmbH")
    return [alice]


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str).encode()
    return str(value).encode()


def test_database_holds_no_jwt_after_runs(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    _run_every_flow(client, token)
    tables = db.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
    ).fetchall()
    scanned = {f"{schema}.{name}" for schema, name in tables}
    assert {"public.checkpoints", "public.checkpoint_blobs", "public.checkpoint_writes", "mandate.audit_records"} <= scanned
    for schema, name in tables:
        for row in db.execute(sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(name))):
            for value in row:
                assert not JWT.search(_as_bytes(value)), f"a JWT is stored in {schema}.{name}"


def test_spans_cover_nodes_and_decisions_without_tokens_or_names(
    client: httpx.Client, token: Callable[..., str], spans: InMemorySpanExporter, db: psycopg.Connection
) -> None:
    spans.clear()
    _run_every_flow(client, token)
    finished = spans.get_finished_spans()
    names = {span.name for span in finished}
    assert {
        "invoke_agent mandate",
        "node planner",
        "node retriever",
        "node step_up",
        "node consent",
        "node tool_executor",
        "node responder",
        "mandate.retrieve",
        "mandate.authz.check",
        "mandate.token_exchange",
        "execute_tool create_ticket",
    } <= names
    tool = next(s for s in finished if s.name == "execute_tool create_ticket")
    assert tool.attributes["mandate.actor_chain"] == ("agent-executor",)
    assert len(str(tool.attributes["mandate.audit.record_id"])) >= 8
    [decided] = [s for s in finished if s.attributes and s.attributes.get("mandate.approval.decision") == "approve"]
    assert str(decided.attributes["mandate.approval.decider"]).startswith("psn_")
    decisions = [s for s in finished if s.name == "mandate.authz.check"]
    assert {s.attributes["mandate.authz.relation"] for s in decisions} >= {"can_use", "invoker"}  # the tool call
    [retrieval] = [s for s in finished if s.name == "mandate.retrieve"]  # the documents: OpenFGA's closure, no per-chunk check
    assert retrieval.attributes["mandate.retrieval.fga_calls"] >= 1
    for span in finished:
        for key, value in (span.attributes or {}).items():
            text = str(value).encode()
            assert not JWT.search(text), f"span {span.name} attribute {key} holds a JWT"
            assert b"alice" not in text, f"span {span.name} attribute {key} names the user"
    callers = {s.attributes["mandate.caller"] for s in finished if s.name == "invoke_agent mandate"}
    assert all(str(c).startswith("psn_") for c in callers)
    roots = [s for s in finished if s.name == "invoke_agent mandate"]
    tool_span = next(s for s in finished if s.name == "execute_tool create_ticket")
    traceparents = [row[0] for row in db.execute("SELECT traceparent FROM mandate.demo_effects WHERE traceparent IS NOT NULL")]
    assert any(tp.split("-")[1] == format(tool_span.context.trace_id, "032x") for tp in traceparents)
    for root in roots:
        assert root.parent is None or root.parent.is_remote  # a resumed run continues its paused trace
    node_spans = [s for s in finished if s.name.startswith("node ")]
    root_traces = {r.context.trace_id for r in roots}
    assert all(s.context.trace_id in root_traces for s in node_spans)
