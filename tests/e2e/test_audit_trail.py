"""A run leaves one trace and a linked, durable audit trail; spans carry no secrets; no audit, no tool."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate.audit import build_tracer_provider
from mandate.runtime.settings import DevSettings, Settings
from mandate.api.app import create_app
from tests.audit.helpers import audit_store_refuses
from tests.utils.openai_double import ChatDouble
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.threads import ask, new_thread, resume
from tests.utils.tokens import login

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")
MSA_PHRASES = ("net 45 days", "two times the fees", "Frankfurt am Main", "99.9 percent")


@dataclass(kw_only=True)
class _SearchAndActDouble(ChatDouble):
    """A model that, with its tool call, also asks to search the documents: retrieval and action in one run."""

    def _reply(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = super()._reply(body)
        message = reply["choices"][0]["message"]
        if message.get("tool_calls"):
            search = {"query": "ACME contract terms"}
            message["tool_calls"].append(
                {"id": "call_search", "type": "function",
                 "function": {"name": "search_documents", "arguments": json.dumps(search)}}
            )
        return reply


@pytest.fixture(scope="module")
def planned_app(stack_settings: Settings) -> Iterator[tuple[str, InMemorySpanExporter]]:
    """Mandate planning with a model (a wire-level double) on the session's stack, with its own span exporter."""
    model = _SearchAndActDouble(rules=[(r"review", "create_ticket", {"title": "Review the ACME terms"})])
    exporter = InMemorySpanExporter()
    port = free_port()
    with serve_in_thread(model.app()) as model_url:
        settings = DevSettings(
            env="test", port=port, data_dir=stack_settings.data_dir, database_url=stack_settings.database_url,
            fga_api_url=stack_settings.fga_api_url, llm_base_url=f"{model_url}/v1", llm_api_key="sk-test-double",
        )
        with serve_in_thread(create_app(settings, tracer_provider=build_tracer_provider(exporter)), port=port) as url:
            yield url, exporter


def _trace_of_thread(spans: InMemorySpanExporter, thread_id: str) -> list[ReadableSpan]:
    finished = spans.get_finished_spans()
    roots = [
        s for s in finished if s.name == "invoke_agent mandate" and s.attributes["gen_ai.conversation.id"] == thread_id
    ]
    trace_ids = {root.context.trace_id for root in roots}
    assert len(roots) == 2 and len(trace_ids) == 1, "the paused and the resumed run must share one trace"
    return [s for s in finished if s.context.trace_id in trace_ids]


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == name]
    return span


def _texts(span: ReadableSpan) -> Iterator[tuple[str, str]]:
    for key, value in (span.attributes or {}).items():
        yield key, json.dumps(value) if not isinstance(value, str) else value
    for event in span.events:
        for key, value in (event.attributes or {}).items():
            yield f"{event.name}.{key}", str(value)


def test_full_run_is_one_trace_with_genai_names_and_audit_links(
    planned_app: tuple[str, InMemorySpanExporter], db: psycopg.Connection
) -> None:
    url, spans = planned_app
    alice = login(url, "alice")
    with httpx.Client(base_url=url, timeout=60) as client:
        thread = new_thread(client, alice)
        ask(client, alice, thread, "Summarize the ACME contract and open a ticket to review it")
        values = resume(client, alice, thread, {"decisions": [{"type": "approve"}]}).json()
    [outcome] = values["outcomes"]
    trace = _trace_of_thread(spans, thread)

    assert {
        "invoke_agent mandate", "node planner", "node retriever", "node consent", "node tool_executor",
        "node responder", "mandate.retrieve", "mandate.authz.check", "mandate.token_exchange",
        "execute_tool create_ticket",
    } <= {s.name for s in trace}
    root = [s for s in trace if s.name == "invoke_agent mandate"][0]
    assert (root.attributes["gen_ai.operation.name"], root.attributes["gen_ai.agent.id"]) == ("invoke_agent", "mandate")
    tool = _one(trace, "execute_tool create_ticket")
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "create_ticket"
    assert tool.attributes["gen_ai.tool.call.id"] == outcome["call_id"]
    assert tool.attributes["gen_ai.conversation.id"] == thread
    exchange = _one(trace, "mandate.token_exchange")
    assert exchange.attributes["mandate.exchange.audience"] == f"{url}/demo/tickets"
    assert list(exchange.attributes["mandate.exchange.scopes"]) == ["tickets:write"]
    decisions = {(s.attributes["mandate.authz.relation"], s.attributes["mandate.authz.allowed"]) for s in trace
                 if s.name == "mandate.authz.check"}
    assert ("invoker", True) in decisions  # the tool call: OpenFGA's decision for the agent
    retrieval = _one(trace, "mandate.retrieve")  # the documents: matched against OpenFGA's closure, as of its change log
    assert retrieval.attributes["mandate.retrieval.returned"] >= 1 and retrieval.attributes["mandate.retrieval.fga_calls"] >= 1
    assert all("mandate.authz.model_id" in s.attributes for s in trace if s.name == "mandate.authz.check")

    started = db.execute(
        "SELECT id::text, trace_id, span_id FROM mandate.audit_records WHERE thread_id = %s AND event = 'tool.started'",
        (thread,),
    ).fetchone()
    assert started is not None
    assert started[1:] == (format(tool.context.trace_id, "032x"), format(tool.context.span_id, "016x"))
    marks = [dict(e.attributes or {}) for e in tool.events if e.name == "mandate.audit.record"]
    assert [m["mandate.audit.event"] for m in marks] == ["tool.started", "tool.succeeded"]
    assert marks[0]["mandate.audit.record_id"] == started[0]


def test_spans_hold_no_token_document_text_argument_or_subject_by_default(
    client: httpx.Client, token: Callable[..., str], spans: InMemorySpanExporter
) -> None:
    spans.clear()
    alice = token("alice")
    ask(client, alice, new_thread(client, alice), "Summarize the latest contract terms for ACME.")
    thread = new_thread(client, alice)
    ask(client, alice, thread, "Open a ticket: badge XQZ-4711 stopped working")
    resume(client, alice, thread, {"decisions": [{"type": "approve"}]})
    finished = spans.get_finished_spans()
    assert finished
    for span in finished:
        for key, text in _texts(span):
            assert not JWT.search(text), f"{span.name} {key} holds a token"
            assert "XQZ-4711" not in text, f"{span.name} {key} holds a tool argument"
            assert "alice" not in text, f"{span.name} {key} names the user"
            assert not any(p.lower() in text.lower() for p in MSA_PHRASES), f"{span.name} {key} holds document text"


def test_audit_store_down_refuses_the_sensitive_tool(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    ask(client, alice, thread, "Open a ticket: conference phone dead")
    with audit_store_refuses(db, "tool.started"):
        values: dict[str, Any] = resume(client, alice, thread, {"decisions": [{"type": "approve"}]}).json()
    [outcome] = values["outcomes"]
    assert (outcome["status"], outcome["code"]) == ("failed", "audit_unavailable")
    tickets = db.execute(
        "SELECT count(*) FROM mandate.demo_effects WHERE api = 'tickets' AND idempotency_key LIKE %s", (f"{thread}:%",)
    ).fetchone()
    assert tickets == (0,)
