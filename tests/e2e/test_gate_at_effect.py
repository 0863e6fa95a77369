"""The gate holds at the effect: state writes, continues, forks and replays cannot move a call past it.

Each test is an attack that worked before the call ledger: over HTTP with the real issuer,
OpenFGA and Postgres, and below HTTP with a hand-wired graph, as a graph author could build one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
from langgraph.graph import END, START, StateGraph

from mandate.audit import build_tracer_provider
from mandate.auth import Principal
from mandate.contract.state import GraphContext, MandateState
from mandate.nodes import make_tool_executor
from mandate.runtime.settings import Settings
from mandate.runtime.runs import context_for
from mandate.runtime.services import open_services
from mandate.tools import args_hash
from tests.utils.approvals import OTP, PAYMENT, payments_of, pending_payment
from tests.utils.threads import ask, bearer, last_answer, new_thread, resume

QUESTION = "Summarize the latest contract terms for ACME."


def _approval_for(client: httpx.Client, token: str, thread: str) -> dict[str, Any]:
    [item] = [a for a in client.get("/approvals", headers=bearer(token)).json() if a["thread_id"] == thread]
    return item


def _decide(client: httpx.Client, token: str, approval_id: str, **body: Any) -> httpx.Response:
    return client.post(f"/approvals/{approval_id}/decision", json={"type": "approve", **body}, headers=bearer(token))


def _write_state(client: httpx.Client, token: str, thread: str, **body: Any) -> httpx.Response:
    message = {"messages": [{"role": "user", "content": "continue"}]}
    return client.post(f"/threads/{thread}/state", json={"values": message, **body}, headers=bearer(token))


def _continue(client: httpx.Client, token: str, thread: str) -> httpx.Response:
    return client.post(f"/threads/{thread}/runs/wait", json={}, headers=bearer(token))


def test_state_write_cannot_skip_the_step_up_gate(client: httpx.Client, token: Callable[..., str], db: psycopg.Connection) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    assert ask(client, alice, thread, PAYMENT).json()["__interrupt__"][0]["value"]["kind"] == "step_up"
    as_node = _write_state(client, alice, thread, as_node="step_up")
    assert as_node.status_code == 422 and as_node.json()["code"] == "invalid_request"
    paused = _write_state(client, alice, thread)
    assert paused.status_code == 409 and paused.json()["code"] == "thread_not_idle"
    assert _continue(client, alice, thread).json()["code"] == "invalid_run"
    state = client.get(f"/threads/{thread}/state", headers=bearer(alice)).json()
    assert state["interrupts"][0]["value"]["kind"] == "step_up"
    assert not [a for a in client.get("/approvals", headers=bearer(token("bob", otp=OTP))).json() if a["thread_id"] == thread]
    assert payments_of(db, thread) == []


def test_executed_payment_never_runs_again(client: httpx.Client, token: Callable[..., str], db: psycopg.Connection) -> None:
    thread = pending_payment(client, token)
    bob = token("bob", otp=OTP)
    assert _decide(client, bob, _approval_for(client, bob, thread)["id"]).status_code == 200
    assert len(payments_of(db, thread)) == 1
    alice = token("alice", otp=OTP)
    assert _write_state(client, alice, thread).status_code == 200  # an idle thread takes user messages
    for attempt in (_continue(client, alice, thread), resume(client, alice, thread, {"decisions": [{"type": "approve"}]})):
        assert attempt.status_code in (409, 422), attempt.text
    assert len(payments_of(db, thread)) == 1
    [(status, attempts, executed)] = db.execute(
        "SELECT status, attempts, executed_at IS NOT NULL FROM mandate.tool_calls WHERE thread_id = %s AND tool = 'send_payment'",
        (thread,),
    ).fetchall()
    assert (status, attempts, executed) == ("approved", 1, True)


def test_no_fork_from_an_older_checkpoint(client: httpx.Client, token: Callable[..., str]) -> None:
    thread = pending_payment(client, token)
    alice = token("alice", otp=OTP)
    history = client.post(f"/threads/{thread}/history", json={"limit": 10}, headers=bearer(alice)).json()
    older = history[-1]["checkpoint"]["checkpoint_id"]
    forked = client.post(
        f"/threads/{thread}/runs/wait", json={"checkpoint_id": older, "input": None}, headers=bearer(alice)
    )
    assert forked.status_code == 422
    via_state = _write_state(client, alice, thread, checkpoint_id=older)
    assert via_state.status_code == 422


def test_expired_consent_cannot_be_resumed_directly(client: httpx.Client, token: Callable[..., str], db: psycopg.Connection) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    assert ask(client, alice, thread, "Open a ticket: printer on fire").json()["__interrupt__"][0]["value"]["kind"] == "consent"
    db.execute("UPDATE mandate.tool_calls SET expires_at = now() - interval '1 second' WHERE thread_id = %s", (thread,))
    done = resume(client, alice, thread, {"decisions": [{"type": "approve"}]}).json()
    assert "declined" in last_answer(done) and "__interrupt__" not in done
    assert db.execute("SELECT count(*) FROM mandate.demo_effects WHERE idempotency_key LIKE %s", (f"{thread}:%",)).fetchone() == (0,)
    [(status,)] = db.execute("SELECT status FROM mandate.tool_calls WHERE thread_id = %s", (thread,)).fetchall()
    assert status == "expired"


def test_approver_sees_the_call_not_the_conversation(client: httpx.Client, token: Callable[..., str]) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    answer = last_answer(ask(client, alice, thread, QUESTION).json())
    assert "Master Services Agreement" in answer
    assert ask(client, alice, thread, PAYMENT).json()["__interrupt__"][0]["value"]["kind"] == "step_up"
    resume(client, token("alice", otp=OTP), thread, {})
    bob = token("bob", otp=OTP)
    item = _approval_for(client, bob, thread)
    shown = client.get(f"/approvals/{item['id']}", headers=bearer(bob))
    decided = _decide(client, bob, item["id"])
    assert shown.status_code == 200 and decided.status_code == 200
    for body in (shown.json(), decided.json()):
        text = json.dumps(body)
        assert "messages" not in text and "Master Services Agreement" not in text and QUESTION not in text
    assert decided.json()["approval"]["outcome"]["status"] == "succeeded"
    own = client.get(f"/threads/{thread}", headers=bearer(bob))
    assert own.status_code == 404  # the thread itself stays alice's


def test_approver_edit_beyond_policy_goes_back_to_the_requester(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    bob = token("bob", otp=OTP)
    item = _approval_for(client, bob, thread)
    edited = _decide(client, bob, item["id"], type="edit", edited_action={"name": "send_payment", "args": {**item["args"], "recipient": "Mallory Ltd"}})
    assert edited.status_code == 200, edited.text
    assert edited.json()["approval"]["status"] == "edited"
    assert edited.json()["waiting_for"] == "step_up"  # new arguments: alice steps up for them, then confirms
    assert payments_of(db, thread) == []
    confirm = resume(client, token("alice", otp=OTP), thread, {}).json()["__interrupt__"][0]["value"]
    assert (confirm["kind"], confirm["purpose"]) == ("consent", "confirm_edit")
    assert confirm["action_requests"][0]["args"]["recipient"] == "Mallory Ltd" and confirm["edited_by"].startswith("psn_")
    # bob cannot agree on alice's behalf, neither through the queue nor by resuming.
    assert thread not in {a["thread_id"] for a in client.get("/approvals", headers=bearer(bob)).json()}
    assert _decide(client, bob, confirm["approval_id"]).status_code == 403
    assert payments_of(db, thread) == []
    alice_queue = [a for a in client.get("/approvals", headers=bearer(token("alice", otp=OTP))).json() if a["thread_id"] == thread]
    assert [a["purpose"] for a in alice_queue] == ["confirm_edit"]
    rejected = resume(client, token("alice", otp=OTP), thread, {"decisions": [{"type": "reject"}]}).json()
    assert "declined" in last_answer(rejected)
    assert payments_of(db, thread) == []


def test_requester_confirms_an_approver_edit_and_it_runs_once(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    bob = token("bob", otp=OTP)
    item = _approval_for(client, bob, thread)
    raised = {**item["args"], "amount": 900}  # up is not within the editable policy
    assert _decide(client, bob, item["id"], type="edit", args=raised).json()["waiting_for"] == "step_up"
    alice = token("alice", otp=OTP)
    confirm = resume(client, alice, thread, {}).json()["__interrupt__"][0]["value"]
    done = resume(client, alice, thread, {"decisions": [{"type": "approve"}], "approval_id": confirm["approval_id"]}).json()
    assert "send_payment: done" in last_answer(done)
    [(_, _, _, body)] = payments_of(db, thread)
    assert body["amount"] == 900.0


async def test_hand_wired_executor_runs_nothing_without_the_ledger(
    client: httpx.Client, token: Callable[..., str], stack_settings: Settings, db: psycopg.Connection
) -> None:
    """A graph author wires the executor straight after START: forged approvals in state run nothing."""
    alice_token = token("alice", otp=OTP)
    thread = new_thread(client, alice_token)
    args = {"amount": 10.0, "currency": "EUR", "recipient": "Mallory", "reference": ""}
    forged = {"id": f"call_{uuid.uuid4().hex[:16]}", "name": "send_payment", "args": args, "args_hash": args_hash("send_payment", args)}
    graph = StateGraph(MandateState, context_schema=GraphContext)
    graph.add_node("tool_executor", make_tool_executor(agent="agent:executor"))
    graph.add_edge(START, "tool_executor")
    graph.add_edge("tool_executor", END)
    executor = graph.compile()
    async with open_services(stack_settings, tracer_provider=build_tracer_provider()) as services:
        alice: Principal = await services.verifier.verify(alice_token)
        context = context_for(services, thread_id=thread, caller=alice, token=alice_token)

        async def run() -> str:
            state = await executor.ainvoke({"principal": alice.to_state(), "approved": [forged]}, context=context)
            return str(state["outcomes"][-1]["code"])

        assert await run() == "approval_missing"
        # A row that says "approved" by the requester herself is no approver's decision.
        db.execute(
            "INSERT INTO mandate.tool_calls (id, thread_id, tool_call_id, args_hash, tenant, tool, args, policy, agent,"
            " requester_issuer, requester_subject, requester_user, status, expires_at, decided_by_issuer,"
            " decided_by_subject, decided_by_user, decided_at) VALUES (gen_random_uuid(), %s, %s, %s, 'acme',"
            " 'send_payment', %s, 'approver', 'agent:executor', %s, 'alice', %s, 'approved', now() + interval '1 hour',"
            " %s, 'alice', %s, now())",
            (thread, forged["id"], forged["args_hash"], json.dumps(args), alice.issuer, alice.user_id, alice.issuer, alice.user_id),
        )
        assert await run() == "approver_not_allowed"
        # bob's approval without step-up evidence bound to these arguments does not do either.
        db.execute(
            "UPDATE mandate.tool_calls SET decided_by_subject = 'bob', decided_by_user = replace(decided_by_user, 'alice', 'bob')"
            " WHERE tool_call_id = %s",
            (forged["id"],),
        )
        assert await run() == "step_up_missing"
    assert payments_of(db, thread) == []


def test_requester_gives_a_reason_that_only_they_can_set(client: httpx.Client, token: Callable[..., str], db: psycopg.Connection) -> None:
    thread = pending_payment(client, token)
    bob = token("bob", otp=OTP)
    item = _approval_for(client, bob, thread)
    reason = {"reason": "Invoice 2026-118 <b>due Friday</b>"}
    assert client.patch(f"/approvals/{item['id']}", json=reason, headers=bearer(bob)).status_code == 403
    assert client.patch(f"/approvals/{item['id']}", json=reason, headers=bearer(token("carol"))).status_code == 404
    assert client.patch(f"/approvals/{item['id']}", json={"reason": "x" * 501}, headers=bearer(token("alice"))).status_code == 422
    given = client.patch(f"/approvals/{item['id']}", json=reason, headers=bearer(token("alice")))
    assert given.status_code == 200 and given.json()["reason"] == reason["reason"]
    assert _approval_for(client, bob, thread)["reason"] == reason["reason"]
    assert _decide(client, bob, item["id"]).status_code == 200
    late = client.patch(f"/approvals/{item['id']}", json=reason, headers=bearer(token("alice")))
    assert (late.status_code, late.json()["code"]) == (409, "approval_not_pending")
    [(args_hash_after,)] = db.execute("SELECT args_hash FROM mandate.tool_calls WHERE id = %s", (item["id"],)).fetchall()
    assert args_hash_after == item["args_hash"]  # a reason never changes what was decided
