"""The payment demo's trace in a real Jaeger: one trace across the pause and bob's resume, each gate a
span, the audit records and the trace pointing at each other, and nothing secret in any attribute."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider

from mandate.api.app import create_app
from mandate.audit import Pseudonymizer, build_tracer_provider
from mandate.devstack.jaeger import EmbeddedJaeger
from mandate.runtime.settings import DevSettings, Settings
from tests.e2e.test_approver_page import page_sign_in
from tests.utils.approvals import OTP, PAYMENT
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.threads import ask, bearer, new_thread, resume
from tests.utils.tokens import login

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z0-9.]+")
NEVER_IN_SPANS = ("Initech", "250 EUR", "Send 250", "alice", "bob", "net 45 days", "Frankfurt am Main")
"""Argument values, the user's words, user names and MSA text: none may reach Jaeger."""
JAEGER_WAIT_S = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class PaidRun:
    """One payment demo run and what Jaeger holds of it."""

    url: str
    thread: str
    trace_id: str
    spans: list[dict[str, Any]]
    processes: dict[str, Any]


def _tags(item: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in item.get("tags", [])}


def _events(span: dict[str, Any]) -> list[dict[str, Any]]:
    return [{field["key"]: field["value"] for field in log["fields"]} for log in span.get("logs", [])]


def _named(run: PaidRun, name: str) -> list[dict[str, Any]]:
    return [span for span in run.spans if span["operationName"] == name]


@pytest.fixture(scope="module")
def jaeger_app(stack_settings: Settings, jaeger: EmbeddedJaeger) -> Iterator[tuple[str, TracerProvider]]:
    """Mandate on the session's stack exporting every span over OTLP/HTTP to the real Jaeger."""
    port = free_port()
    settings = DevSettings(
        env="test", port=port, data_dir=stack_settings.data_dir, database_url=stack_settings.database_url,
        fga_api_url=stack_settings.fga_api_url, trace_link=f"{jaeger.query_url}/api/traces/{{trace_id}}",
    )
    provider = build_tracer_provider(otlp_endpoint=jaeger.otlp_traces_endpoint)
    try:
        with serve_in_thread(create_app(settings, tracer_provider=provider), port=port) as url:
            yield url, provider
    finally:
        provider.shutdown()


def _jaeger_trace_of(jaeger: EmbeddedJaeger, thread: str) -> tuple[str, dict[str, Any]]:
    """The one trace Jaeger finds for ``thread``, once it holds the resumed run's payment."""
    params = {"service": "mandate", "tags": json.dumps({"gen_ai.conversation.id": thread}), "lookback": "1h"}
    deadline = time.monotonic() + JAEGER_WAIT_S
    with httpx.Client(base_url=jaeger.query_url, timeout=10) as http:
        while True:
            found = http.get("/api/traces", params=params).json()["data"] or []
            trace_ids = {trace["traceID"] for trace in found}
            if len(trace_ids) == 1:
                [trace_id] = trace_ids
                [trace] = http.get(f"/api/traces/{trace_id}").json()["data"]
                if any(span["operationName"] == "execute_tool send_payment" for span in trace["spans"]):
                    return trace_id, trace
            assert len(trace_ids) <= 1, f"the run of {thread} is split over traces {sorted(trace_ids)}"
            assert time.monotonic() < deadline, f"Jaeger has no complete trace of {thread}: {found}"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def paid(jaeger_app: tuple[str, TracerProvider], jaeger: EmbeddedJaeger) -> PaidRun:
    """alice asks to pay, steps up, bob approves: the payment is made, and Jaeger holds the trace."""
    url, provider = jaeger_app
    with httpx.Client(base_url=url, timeout=60) as client:
        alice = login(url, "alice")
        thread = new_thread(client, alice)
        assert ask(client, alice, thread, PAYMENT).json()["__interrupt__"][0]["value"]["kind"] == "step_up"
        waiting = resume(client, login(url, "alice", otp=OTP), thread, {}).json()
        assert waiting["__interrupt__"][0]["value"]["kind"] == "approval"
        bob = login(url, "bob", otp=OTP)
        [approval] = [a for a in client.get("/approvals", headers=bearer(bob)).json() if a["thread_id"] == thread]
        decided = client.post(
            f"/approvals/{approval['id']}/decision", json={"type": "approve"}, headers=bearer(bob)
        )
        assert decided.status_code == 200, decided.text
        assert decided.json()["approval"]["outcome"]["status"] == "succeeded"
    assert provider.force_flush(timeout_millis=30_000)
    trace_id, trace = _jaeger_trace_of(jaeger, thread)
    return PaidRun(url=url, thread=thread, trace_id=trace_id, spans=trace["spans"], processes=trace["processes"])


def _pseudonym(run: PaidRun, user: str) -> str:
    return Pseudonymizer(DevSettings().pseudonym_key.get_secret_value().encode())(f"{run.url}/dev-idp", user)


def test_jaeger_holds_one_trace_across_the_pause_and_bobs_resume(paid: PaidRun) -> None:
    runs = sorted(_named(paid, "invoke_agent mandate"), key=lambda span: span["startTime"])
    assert len(runs) == 3, "the request, alice's step-up resume and bob's approval resume"
    tags = [_tags(span) for span in runs]
    assert [t["mandate.resume"] for t in tags] == [False, True, True]
    assert {t["gen_ai.operation.name"] for t in tags} == {"invoke_agent"}
    assert {t["gen_ai.conversation.id"] for t in tags} == {paid.thread}
    assert [t["mandate.caller"] for t in tags] == [
        _pseudonym(paid, "alice"), _pseudonym(paid, "alice"), _pseudonym(paid, "bob")
    ]
    assert all(span["traceID"] == paid.trace_id for span in paid.spans)


def test_jaeger_trace_has_genai_spans_each_authorization_decision_and_the_exchange(paid: PaidRun) -> None:
    [tool] = _named(paid, "execute_tool send_payment")
    tool_tags = _tags(tool)
    assert (tool_tags["gen_ai.operation.name"], tool_tags["gen_ai.tool.name"]) == ("execute_tool", "send_payment")
    assert tool_tags["gen_ai.agent.id"] == "agent:executor"
    checks = [_tags(span) for span in _named(paid, "mandate.authz.check")]
    assert checks and all(isinstance(check["mandate.authz.allowed"], bool) for check in checks)
    decided = {(c["mandate.authz.relation"], c["mandate.authz.object"], c["mandate.authz.allowed"]) for c in checks}
    assert {("can_use", "tool:send_payment", True), ("invoker", "tool:send_payment", True)} <= decided
    [exchange] = _named(paid, "mandate.token_exchange")
    exchange_tags = _tags(exchange)
    assert exchange_tags["mandate.exchange.audience"] == f"{paid.url}/demo/payments"
    assert "payments:write" in str(exchange_tags["mandate.exchange.scopes"])
    assert {ref["spanID"] for ref in exchange["references"]} == {tool["spanID"]}


def test_jaeger_trace_names_the_approval_decision_and_its_decider(paid: PaidRun) -> None:
    decisions = [_tags(span) for span in paid.spans if "mandate.approval.decision" in _tags(span)]
    assert [(d["mandate.approval.decision"], d["mandate.approval.decider"]) for d in decisions] == [
        ("approve", _pseudonym(paid, "bob"))
    ]
    assert decisions[0]["mandate.approval.policy"] == "approver"


def test_downstream_payment_joined_the_trace_through_traceparent(paid: PaidRun, db: psycopg.Connection) -> None:
    [(traceparent,)] = db.execute(
        "SELECT traceparent FROM mandate.demo_effects WHERE api = 'payments' AND idempotency_key LIKE %s",
        (f"{paid.thread}:%",),
    ).fetchall()
    version, trace_id, parent_span, _flags = traceparent.split("-")
    assert (version, trace_id) == ("00", paid.trace_id)
    assert parent_span in {span["spanID"] for span in paid.spans}, "the API's caller is a span Jaeger holds"


def test_every_audit_record_of_the_run_is_in_the_jaeger_trace_and_back(paid: PaidRun, db: psycopg.Connection) -> None:
    records = db.execute(
        "SELECT id::text, event, trace_id, span_id FROM mandate.audit_records WHERE thread_id = %s ORDER BY seq",
        (paid.thread,),
    ).fetchall()
    assert [event for _, event, _, _ in records] == [
        "step_up.required", "step_up.satisfied", "consent.requested", "consent.decided", "tool.started",
        "tool.succeeded",
    ]
    span_ids = {span["spanID"] for span in paid.spans}
    for record_id, event, trace_id, span_id in records:
        assert trace_id == paid.trace_id, f"{event} {record_id} names another trace"
        assert span_id in span_ids, f"{event} {record_id} names a span Jaeger does not hold"
    marked = {
        fields["mandate.audit.record_id"]: fields["mandate.audit.event"]
        for span in paid.spans for fields in _events(span) if fields.get("event") == "mandate.audit.record"
    }
    assert marked == {record_id: event for record_id, event, _, _ in records}


def test_jaeger_trace_holds_no_token_email_argument_name_or_document_text(paid: PaidRun) -> None:
    texts: list[tuple[str, str]] = []
    for span in paid.spans:
        texts += [(f"{span['operationName']} {key}", str(value)) for key, value in _tags(span).items()]
        texts += [(f"{span['operationName']} event {k}", str(v)) for fields in _events(span) for k, v in fields.items()]
    for process in paid.processes.values():
        texts += [(f"process {key}", str(value)) for key, value in _tags(process).items()]
    assert len(texts) > 100
    for where, text in texts:
        assert not JWT.search(text), f"{where} holds a token"
        assert not EMAIL.search(text), f"{where} holds an e-mail address"
        assert not any(word.lower() in text.lower() for word in NEVER_IN_SPANS), f"{where} holds {text!r}"


def test_timeline_page_links_each_record_to_its_trace_in_jaeger(paid: PaidRun, db: psycopg.Connection) -> None:
    bob = page_sign_in(paid.url, "bob")
    page = httpx.get(f"{paid.url}/ui/audit", params={"thread_id": paid.thread}, headers=bob.headers, timeout=60)
    assert page.status_code == 200, page.text
    links = re.findall(r'<dd class="trace"><a href="([^"]+)" rel="noreferrer">([0-9a-f]{32})</a>', page.text)
    records = db.execute("SELECT span_id FROM mandate.audit_records WHERE thread_id = %s", (paid.thread,)).fetchall()
    assert len(links) == len(records) == 6
    for href, trace_id in links:
        assert trace_id == paid.trace_id
        [trace] = httpx.get(href, timeout=10).json()["data"]  # the link the auditor follows, answered by Jaeger
        assert {span_id for (span_id,) in records} <= {span["spanID"] for span in trace["spans"]}
