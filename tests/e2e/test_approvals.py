"""The payment demo and the approval queue's attacks, over HTTP with the real issuer, OpenFGA, Postgres."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from mandate.runtime.settings import Settings
from tests.utils.approvals import OTP, PAYMENT, payments_of, pending_payment
from tests.utils.threads import ask, bearer, last_answer, new_thread, resume

def _approval_for(client: httpx.Client, token: str, thread: str) -> dict[str, Any]:
    listed = client.get("/approvals", headers=bearer(token))
    assert listed.status_code == 200, listed.text
    [item] = [a for a in listed.json() if a["thread_id"] == thread]
    return item


def _decide(client: httpx.Client, token: str, approval_id: str, **body: Any) -> httpx.Response:
    return client.post(f"/approvals/{approval_id}/decision", json={"type": "approve", **body}, headers=bearer(token))


def test_payment_demo_alice_asks_steps_up_bob_approves_one_payment(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection, stack_settings: Settings
) -> None:
    thread = pending_payment(client, token)
    bob = token("bob", otp=OTP)
    item = _approval_for(client, bob, thread)
    assert item["action"] == "send_payment"
    assert item["args"] == {"amount": 250.0, "currency": "EUR", "recipient": "Initech Services GmbH", "reference": ""}
    assert item["requester"] == "alice" and item["agent"] == "agent:executor" and item["policy"] == "approver"
    assert item["expires_at"] > item["created_at"]

    response = _decide(client, bob, item["id"], comment="invoice 2026-118 checked")
    assert response.status_code == 200, response.text
    decided = response.json()
    assert decided["approval"]["status"] == "approved" and decided["approval"]["decided_by"] == "bob"
    assert decided["approval"]["outcome"]["status"] == "succeeded" and decided["waiting_for"] is None
    stored = db.execute("SELECT decided_by_subject, comment FROM mandate.tool_calls WHERE id = %s", (item["id"],)).fetchone()
    assert stored == ("bob", "invoice 2026-118 checked")
    state = client.get(f"/threads/{thread}/state", headers=bearer(token("alice"))).json()
    assert "send_payment: done" in last_answer(state["values"])
    [(subject, actor, audience, body)] = payments_of(db, thread)
    assert (subject, actor, audience) == ("alice", stack_settings.agents["executor"].client_id, stack_settings.payments_api_url)
    assert body["amount"] == 250.0

    replay = _decide(client, bob, item["id"])
    assert replay.status_code == 409
    assert replay.json()["code"] == "approval_not_pending"
    assert len(payments_of(db, thread)) == 1


def test_approval_without_fresh_mfa_answers_rfc9470_challenge(client: httpx.Client, token: Callable[..., str]) -> None:
    thread = pending_payment(client, token)
    bob_password_only = token("bob")
    item = _approval_for(client, bob_password_only, thread)
    response = _decide(client, bob_password_only, item["id"])
    assert response.status_code == 401
    assert response.json()["code"] == "insufficient_user_authentication"
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge
    assert 'acr_values="urn:mandate:acr:mfa"' in challenge and "max_age=300" in challenge
    assert _decide(client, token("bob", otp=OTP), item["id"]).status_code == 200


def test_requester_cannot_approve_own_payment(client: httpx.Client, token: Callable[..., str], db: psycopg.Connection) -> None:
    thread = pending_payment(client, token)
    alice = token("alice", otp=OTP)
    assert thread not in {a["thread_id"] for a in client.get("/approvals", headers=bearer(alice)).json()}
    item = _approval_for(client, token("bob", otp=OTP), thread)
    response = _decide(client, alice, item["id"])
    assert response.status_code == 403
    assert response.json()["code"] == "not_allowed_to_decide"
    assert payments_of(db, thread) == []


@pytest.mark.parametrize(("user", "status", "code"), [("carol", 404, "approval_not_found"), ("dave", 403, "not_allowed_to_decide")])
def test_non_approvers_cannot_see_or_decide(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection, user: str, status: int, code: str
) -> None:
    thread = pending_payment(client, token)
    item = _approval_for(client, token("bob", otp=OTP), thread)
    other = token(user, otp=OTP)
    assert thread not in {a["thread_id"] for a in client.get("/approvals", headers=bearer(other)).json()}
    response = _decide(client, other, item["id"])
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert payments_of(db, thread) == []


def test_concurrent_decisions_one_wins_the_other_gets_409(
    client: httpx.Client, base_url: str, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    bob = token("bob", otp=OTP)
    item = _approval_for(client, bob, thread)
    results: list[int] = []
    barrier = threading.Barrier(2)

    def decide() -> None:
        with httpx.Client(base_url=base_url, timeout=60) as own:
            barrier.wait()
            results.append(_decide(own, bob, item["id"]).status_code)

    workers = [threading.Thread(target=decide) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(results) == [200, 409]
    assert len(payments_of(db, thread)) == 1


def test_edit_is_revalidated_and_pays_the_edited_amount(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    bob = token("bob", otp=OTP)
    item = _approval_for(client, bob, thread)
    bad = _decide(client, bob, item["id"], type="edit", args={**item["args"], "amount": -5})
    assert bad.status_code == 409
    assert bad.json()["code"] == "decision_refused" and "invalid_edit" in bad.json()["message"]
    # The approver may lower the amount on their own (the tool's editable policy): one decision, one payment.
    assert _approval_for(client, bob, thread)["id"] == item["id"]  # still pending
    good = _decide(client, bob, item["id"], type="edit", args={**item["args"], "amount": 200})
    assert good.status_code == 200, good.text
    [(_, _, _, body)] = payments_of(db, thread)
    assert body["amount"] == 200.0


def test_expired_approval_cannot_be_decided(client: httpx.Client, token: Callable[..., str], db: psycopg.Connection) -> None:
    thread = pending_payment(client, token)
    bob = token("bob", otp=OTP)
    item = _approval_for(client, bob, thread)
    db.execute("UPDATE mandate.tool_calls SET expires_at = now() - interval '1 second' WHERE id = %s", (item["id"],))
    response = _decide(client, bob, item["id"])
    assert response.status_code == 410
    assert response.json()["code"] == "approval_expired"
    assert payments_of(db, thread) == []


def test_expired_vault_token_asks_requester_to_sign_in_again(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    db.execute("UPDATE mandate.token_vault SET expires_at = now() - interval '1 second' WHERE thread_id = %s", (thread,))
    bob = token("bob", otp=OTP)
    response = _decide(client, bob, _approval_for(client, bob, thread)["id"])
    assert response.status_code == 200, response.text
    assert response.json()["waiting_for"] == "reauthenticate"
    assert payments_of(db, thread) == []
    # A password-only sign-in is not enough to delegate a payment that needs MFA: asked again.
    weak = resume(client, token("alice"), thread, {}).json()
    assert weak["__interrupt__"][0]["value"]["kind"] == "reauthenticate"
    assert weak["__interrupt__"][0]["value"]["acr_values"] == "urn:mandate:acr:mfa"
    assert payments_of(db, thread) == []
    done = resume(client, token("alice", otp=OTP), thread, {}).json()
    assert "send_payment: done" in last_answer(done)
    assert len(payments_of(db, thread)) == 1


def test_vault_holds_the_token_encrypted_and_bound_to_its_thread(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    [(ciphertext,)] = db.execute("SELECT ciphertext FROM mandate.token_vault WHERE thread_id = %s", (thread,)).fetchall()
    assert b"eyJ" not in bytes(ciphertext)
    other = pending_payment(client, token)
    # Moving a sealed token to another thread's row does not make it usable there.
    db.execute(
        "UPDATE mandate.token_vault SET ciphertext = %s, nonce = (SELECT nonce FROM mandate.token_vault WHERE thread_id = %s) "
        "WHERE thread_id = %s",
        (ciphertext, thread, other),
    )
    bob = token("bob", otp=OTP)
    response = _decide(client, bob, _approval_for(client, bob, other)["id"])
    assert response.json()["waiting_for"] == "reauthenticate"


def test_delegated_token_replayed_at_another_audience_is_refused(
    client: httpx.Client, token: Callable[..., str], stack_settings: Settings
) -> None:
    exchanged = httpx.post(
        f"{stack_settings.dev_issuer_url}/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": token("alice"),
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "audience": stack_settings.tickets_api_url,
            "scope": "tickets:write",
        },
        auth=(stack_settings.agents["executor"].client_id, stack_settings.agents["executor"].client_secret.get_secret_value()),
    )
    assert exchanged.status_code == 200, exchanged.text
    delegated = exchanged.json()["access_token"]
    payment = {"amount": 1, "recipient": "Mallory"}
    replay = client.post("/demo/payments", json=payment, headers={**bearer(delegated), "Idempotency-Key": "x1"})
    assert replay.status_code == 401 and replay.json()["code"] == "wrong_audience"
    as_service = client.post("/threads/search", json={}, headers=bearer(delegated))
    assert as_service.status_code == 401 and as_service.json()["code"] == "wrong_audience"
    user_token = client.post("/demo/tickets", json={"title": "t"}, headers={**bearer(token("alice")), "Idempotency-Key": "x2"})
    assert user_token.status_code == 401 and user_token.json()["code"] == "wrong_audience"


def test_scope_escalation_in_exchange_is_refused(token: Callable[..., str], stack_settings: Settings) -> None:
    narrow = token("alice", scope="openid tickets:write")
    escalated = httpx.post(
        f"{stack_settings.dev_issuer_url}/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": narrow,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "audience": stack_settings.payments_api_url,
            "scope": "payments:write",
        },
        auth=(stack_settings.agents["executor"].client_id, stack_settings.agents["executor"].client_secret.get_secret_value()),
    )
    assert escalated.status_code == 400
    assert escalated.json()["error"] == "invalid_scope"


def test_payment_with_token_lacking_scope_is_denied_before_exchange(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    narrow = token("alice", scope="openid tickets:write", otp=OTP)
    thread = new_thread(client, narrow)
    ask(client, narrow, thread, PAYMENT)
    bob = token("bob", otp=OTP)
    decided = _decide(client, bob, _approval_for(client, bob, thread)["id"]).json()
    assert decided["approval"]["outcome"] is None  # the gate refused before anything ran
    values = client.get(f"/threads/{thread}/state", headers=bearer(narrow)).json()["values"]
    assert values["outcomes"][0]["code"] == "insufficient_scope"
    assert payments_of(db, thread) == []
