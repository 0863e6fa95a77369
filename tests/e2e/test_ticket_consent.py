"""A sensitive tool pauses for consent; approval calls the tickets API once with a delegated token."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import psycopg

from mandate.runtime.settings import Settings
from tests.utils.threads import ask, last_answer, new_thread, resume


def _tickets_for_thread(db: psycopg.Connection, thread_id: str) -> list[tuple[str, str, str, list[str], dict]]:
    rows = db.execute(
        "SELECT subject, actor, audience, scopes, body FROM mandate.demo_effects "
        "WHERE api = 'tickets' AND idempotency_key LIKE %s",
        (f"{thread_id}:%",),
    ).fetchall()
    return list(rows)


def test_ticket_request_pauses_at_consent_in_hitl_shape(client: httpx.Client, token: Callable[..., str]) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    values = ask(client, alice, thread, "Please open a ticket: printer on floor 3 is jammed").json()
    [pending] = values["__interrupt__"]
    request = pending["value"]
    assert request["kind"] == "consent"
    assert request["action_requests"][0]["name"] == "create_ticket"
    assert request["action_requests"][0]["args"]["title"] == "printer on floor 3 is jammed"
    assert request["review_configs"][0]["allowed_decisions"] == ["approve", "edit", "reject"]
    state = client.get(f"/threads/{thread}/state", headers={"Authorization": f"Bearer {alice}"}).json()
    assert state["next"] == ["consent"]
    assert state["interrupts"][0]["value"]["tool_call_id"] == request["tool_call_id"]
    assert request["args_hash"] == state["interrupts"][0]["value"]["args_hash"]


def test_ticket_approved_creates_exactly_one_ticket_with_delegated_token(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection, stack_settings: Settings
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    ask(client, alice, thread, "Open a ticket: VPN is down in Berlin")
    response = resume(client, alice, thread, {"decisions": [{"type": "approve"}]})
    assert response.status_code == 200, response.text
    values = response.json()
    assert "__interrupt__" not in values
    [outcome] = values["outcomes"]
    assert outcome["status"] == "succeeded"
    assert outcome["detail"]["id"] in last_answer(values)

    [(subject, actor, audience, scopes, body)] = _tickets_for_thread(db, thread)
    assert subject == "alice"
    assert actor == stack_settings.agents["executor"].client_id
    assert audience == stack_settings.tickets_api_url
    assert scopes == ["tickets:write"]
    assert body["title"] == "VPN is down in Berlin"

    again = resume(client, alice, thread, {"decisions": [{"type": "approve"}]})
    assert again.status_code == 409
    assert again.json()["code"] == "thread_not_interrupted"
    assert len(_tickets_for_thread(db, thread)) == 1


def test_ticket_rejected_creates_nothing_and_says_declined(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    ask(client, alice, thread, "Open a ticket: coffee machine broken")
    values = resume(client, alice, thread, {"decisions": [{"type": "reject"}]}).json()
    assert values["outcomes"][0]["status"] == "declined"
    assert "declined" in last_answer(values)
    assert _tickets_for_thread(db, thread) == []


def test_ticket_malformed_decision_asks_again_and_runs_nothing(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    ask(client, alice, thread, "Open a ticket: monitor flickers")
    values = resume(client, alice, thread, {"decisions": [{"type": "approve"}, {"type": "approve"}]}).json()
    assert values["__interrupt__"][0]["value"]["error"] == "invalid_decisions"
    assert _tickets_for_thread(db, thread) == []
    values = resume(client, alice, thread, {"decisions": [{"type": "approve"}]}).json()
    assert values["outcomes"][0]["status"] == "succeeded"
    assert len(_tickets_for_thread(db, thread)) == 1


def test_audit_records_tool_start_before_success(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    ask(client, alice, thread, "Open a ticket: badge reader offline")
    resume(client, alice, thread, {"decisions": [{"type": "approve"}]})
    events = db.execute(
        "SELECT event, actor, agent, decision FROM mandate.audit_records WHERE thread_id = %s ORDER BY recorded_at",
        (thread,),
    ).fetchall()
    assert [e[0] for e in events] == ["consent.requested", "consent.decided", "tool.started", "tool.succeeded"]
    assert all(e[1].startswith("psn_") for e in events)
    assert events[1][2] == "agent:executor"


def test_audit_log_refuses_updates_and_deletes(db: psycopg.Connection) -> None:
    for statement in ("UPDATE mandate.audit_records SET decision = 'x'", "DELETE FROM mandate.audit_records"):
        try:
            db.execute(statement)
        except psycopg.errors.RaiseException as exc:
            assert "append-only" in str(exc)
        else:
            raise AssertionError(f"{statement} was allowed")
