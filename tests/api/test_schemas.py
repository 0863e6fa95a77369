"""The answer models leave the wire as the hand-built bodies did: same keys, same order, same values.

Each body below is what the runtime builds (``snapshot_body``, ``thread_values``, ``AuditRecord.to_json``,
LangChain's ``Graph.to_json``), answered through a route with the model and the options Mandate's
route uses; the bytes must equal ``json.dumps`` of the body as FastAPI would have sent it untyped.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from mandate.api.schemas import AuditPage, GraphPublic, RunValues, ThreadState

STATE: dict[str, Any] = {
    "values": {"messages": [{"type": "human", "content": "hi"}]},
    "next": ["consent"],
    "tasks": [
        {
            "id": "t1", "name": "consent", "error": None,
            "interrupts": [{"value": {"kind": "consent", "action_requests": []}, "id": "i1"}],
            "checkpoint": None, "state": None, "result": None,
        }
    ],
    "interrupts": [{"value": {"kind": "consent", "action_requests": []}, "id": "i1"}],
    "metadata": {"step": 3, "run_id": "r1"},
    "created_at": "2025-01-01T00:00:00.000000+00:00",
    "checkpoint": {"thread_id": "th", "checkpoint_ns": "", "checkpoint_id": "c2"},
    "parent_checkpoint": None,
}
PAUSED = {"messages": [{"type": "ai", "content": "?"}], "planned": [], "__interrupt__": [{"value": {"kind": "step_up"}, "id": "i2"}]}
RECORD = {
    "id": "a1", "tenant": "acme", "seq": 7, "recorded_at": "2025-01-01T00:00:00.123456+00:00", "event": "tool.started",
    "actor": "psn_x", "thread_id": "th", "agent": "agent:executor", "tool": "create_ticket", "tool_call_id": "call1",
    "decision": "allowed", "detail": {"scopes": ["tickets:write"]}, "trace_id": None, "span_id": None,
    "prev_hash": "00", "hash": "ff",
}
GRAPH = {
    "nodes": [{"id": "__start__", "type": "schema", "data": "__start__"}, {"id": "bare"}, {"id": 3, "type": "runnable", "data": {"id": ["x"], "name": "n"}, "metadata": {"k": 1}}],
    "edges": [{"source": "__start__", "target": "bare"}, {"source": "bare", "target": 3, "data": "when", "conditional": True}],
}


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (ThreadState, STATE),
        (ThreadState, {**STATE, "checkpoint": {**STATE["checkpoint"], "checkpoint_map": {"": "c2"}}, "parent_checkpoint": {"thread_id": "th", "checkpoint_ns": "", "checkpoint_id": "c1"}}),
        (RunValues, PAUSED),
        (RunValues, {"messages": []}),
        (RunValues, {}),
        (AuditPage, {"records": [{**RECORD, "open": True, "actor_identity": {"issuer": "https://idp", "subject": "alice"}}], "next_cursor": 6}),
        (AuditPage, {"records": [{**RECORD, "event": "tool.denied", "actor_identity": None}], "next_cursor": None}),
        (GraphPublic, GRAPH),
    ],
    ids=["state", "state-with-parent", "paused-run", "run", "no-values", "audit-open", "audit-erased", "graph"],
)
def test_answer_model_keeps_the_wire_bytes(model: type[BaseModel], body: dict[str, Any]) -> None:
    app = FastAPI()

    @app.get("/", response_model=model, response_model_exclude_unset=True)
    async def answer() -> dict[str, Any]:
        return body

    with TestClient(app) as client:
        sent = client.get("/")
    assert sent.status_code == 200, sent.text
    assert sent.content == json.dumps(body, separators=(",", ":")).encode()


def test_run_values_refuse_a_malformed_interrupt() -> None:
    """The one typed key of a run's values is checked: an interrupt without its value is not answered."""
    with pytest.raises(ValueError, match="value"):
        RunValues.model_validate({"messages": [], "__interrupt__": [{"id": "i"}]})
