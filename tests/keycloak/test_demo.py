"""The demo over HTTP with Keycloak's tokens: the same assertions as with the dev issuer.

A question (alice reads the MSA, carol and dave nothing of it), a ticket with consent, a payment
with step-up (RFC 9470's ``acr_values``/``max_age`` sent to Keycloak's login, a real one-time code)
and bob's approval, and the audit rows. Users are Keycloak subjects (UUIDs), issuer-qualified in
OpenFGA as ``user:kc|<uuid>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from mandate.runtime.settings import Settings
from mandate.devstack.keycloak import EmbeddedKeycloak
from tests.keycloak.helpers import LoginRefused, browser_login
from tests.utils.approvals import OTP, PAYMENT, payments_of, pending_payment
from tests.utils.threads import ask, bearer, last_answer, new_thread, resume
from tests.utils.tokens import claims_of

QUESTION = "Summarize the latest contract terms for ACME."
MSA_MARKERS = ("Master Services Agreement", "net 45", "Initech", "acme-msa")


def _approval_for(client: httpx.Client, token: str, thread: str) -> dict[str, Any]:
    listed = client.get("/approvals", headers=bearer(token))
    assert listed.status_code == 200, listed.text
    [item] = [a for a in listed.json() if a["thread_id"] == thread]
    return item


def _decide(client: httpx.Client, token: str, approval_id: str, **body: Any) -> httpx.Response:
    return client.post(f"/approvals/{approval_id}/decision", json={"type": "approve", **body}, headers=bearer(token))


def test_question_as_alice_answers_from_msa(kc_client: httpx.Client, kc_token: Callable[..., str]) -> None:
    alice = kc_token("alice")
    response = ask(kc_client, alice, new_thread(kc_client, alice), QUESTION)
    assert response.status_code == 200, response.text
    values = response.json()
    assert "net 45" in last_answer(values)
    assert "Sources: ACME Master Services Agreement" in last_answer(values)
    assert {chunk["doc_id"] for chunk in values["context"]} == {"acme-msa"}


@pytest.mark.parametrize("user", ["carol", "dave"])
def test_question_as_unauthorized_user_reveals_nothing_of_msa(
    kc_client: httpx.Client, kc_token: Callable[..., str], user: str
) -> None:
    token = kc_token(user)
    response = ask(kc_client, token, new_thread(kc_client, token), QUESTION)
    assert response.status_code == 200, response.text
    for marker in MSA_MARKERS:
        assert marker not in response.text
    assert all(chunk["doc_id"] != "acme-msa" for chunk in response.json()["context"])


def test_ticket_with_consent_creates_one_ticket_with_a_keycloak_delegated_token(
    kc_client: httpx.Client,
    kc_token: Callable[..., str],
    kc_db: psycopg.Connection,
    kc_settings: Settings,
    sub: Callable[[str], str],
) -> None:
    alice = kc_token("alice")
    thread = new_thread(kc_client, alice)
    request = ask(kc_client, alice, thread, "Open a ticket: VPN is down in Berlin").json()["__interrupt__"][0]["value"]
    assert request["kind"] == "consent" and request["action_requests"][0]["name"] == "create_ticket"
    values = resume(kc_client, alice, thread, {"decisions": [{"type": "approve"}]}).json()
    [outcome] = values["outcomes"]
    assert outcome["status"] == "succeeded" and outcome["detail"]["id"] in last_answer(values)
    rows = kc_db.execute(
        "SELECT subject, actor, audience, scopes, body FROM mandate.demo_effects WHERE api = 'tickets' "
        "AND idempotency_key LIKE %s",
        (f"{thread}:%",),
    ).fetchall()
    [(subject, actor, audience, scopes, body)] = rows
    assert (subject, actor, audience, scopes) == (
        sub("alice"),
        "agent-executor",
        kc_settings.tickets_api_url,
        ["tickets:write"],
    )
    assert body["title"] == "VPN is down in Berlin"
    events = kc_db.execute(
        "SELECT event, actor, agent FROM mandate.audit_records WHERE thread_id = %s ORDER BY recorded_at", (thread,)
    ).fetchall()
    assert [e[0] for e in events] == ["consent.requested", "consent.decided", "tool.started", "tool.succeeded"]
    assert all(e[1].startswith("psn_") for e in events) and events[1][2] == "agent:executor"


def test_payment_step_up_at_keycloak_then_bob_approves_one_payment(
    keycloak: EmbeddedKeycloak,
    kc_client: httpx.Client,
    kc_token: Callable[..., str],
    kc_db: psycopg.Connection,
    kc_settings: Settings,
    sub: Callable[[str], str],
) -> None:
    alice = kc_token("alice")
    thread = new_thread(kc_client, alice)
    challenge = ask(kc_client, alice, thread, PAYMENT).json()["__interrupt__"][0]["value"]
    assert (challenge["kind"], challenge["acr_values"], challenge["max_age"]) == ("step_up", "urn:mandate:acr:mfa", 300)

    # RFC 9470: the challenge's acr_values and max_age go to Keycloak, which asks for the second factor.
    stepped_up = browser_login(
        keycloak.issuer, "alice", acr_values=challenge["acr_values"], max_age=challenge["max_age"]
    )
    assert claims_of(stepped_up["access_token"])["acr"] == "urn:mandate:acr:mfa"
    values = resume(kc_client, stepped_up["access_token"], thread, {}).json()
    assert values["__interrupt__"][0]["value"]["kind"] == "approval"

    alice_mfa = kc_token("alice", otp=OTP)
    assert thread not in {a["thread_id"] for a in kc_client.get("/approvals", headers=bearer(alice_mfa)).json()}
    bob_password_only = kc_token("bob")
    item = _approval_for(kc_client, bob_password_only, thread)
    assert item["action"] == "send_payment" and item["requester"] == sub("alice") and item["agent"] == "agent:executor"
    assert item["args"] == {"amount": 250.0, "currency": "EUR", "recipient": "Initech Services GmbH", "reference": ""}
    own = _decide(kc_client, alice_mfa, item["id"])
    assert (own.status_code, own.json()["code"]) == (403, "not_allowed_to_decide")
    weak = _decide(kc_client, bob_password_only, item["id"])
    assert (weak.status_code, weak.json()["code"]) == (401, "insufficient_user_authentication")
    assert 'acr_values="urn:mandate:acr:mfa"' in weak.headers["WWW-Authenticate"]

    bob = kc_token("bob", otp=OTP)
    decided = _decide(kc_client, bob, item["id"], comment="invoice 2026-118 checked")
    assert decided.status_code == 200, decided.text
    approval = decided.json()["approval"]
    assert (approval["status"], approval["decided_by"], approval["outcome"]["status"]) == (
        "approved",
        sub("bob"),
        "succeeded",
    )
    [(subject, actor, audience, body)] = payments_of(kc_db, thread)
    assert (subject, actor, audience) == (sub("alice"), "agent-executor", kc_settings.payments_api_url)
    assert body["amount"] == 250.0
    assert "send_payment: done" in last_answer(
        kc_client.get(f"/threads/{thread}/state", headers=bearer(alice)).json()["values"]
    )
    replay = _decide(kc_client, bob, item["id"])
    assert (replay.status_code, replay.json()["code"]) == (409, "approval_not_pending")
    assert len(payments_of(kc_db, thread)) == 1

    events = [
        row[0]
        for row in kc_db.execute(
            "SELECT event FROM mandate.audit_records WHERE thread_id = %s ORDER BY recorded_at", (thread,)
        ).fetchall()
    ]
    assert events == [
        "step_up.required",
        "step_up.satisfied",
        "consent.requested",
        "consent.decided",
        "tool.started",
        "tool.succeeded",
    ]


def test_non_approvers_see_nothing_and_cannot_decide(
    kc_client: httpx.Client, kc_token: Callable[..., str], kc_db: psycopg.Connection
) -> None:
    thread = pending_payment(kc_client, kc_token)
    item = _approval_for(kc_client, kc_token("bob", otp=OTP), thread)
    for user, status, code in (("carol", 404, "approval_not_found"), ("dave", 403, "not_allowed_to_decide")):
        other = kc_token(user, otp=OTP)
        assert thread not in {a["thread_id"] for a in kc_client.get("/approvals", headers=bearer(other)).json()}
        response = _decide(kc_client, other, item["id"])
        assert (response.status_code, response.json()["code"]) == (status, code)
    assert payments_of(kc_db, thread) == []


def test_wrong_one_time_code_gives_no_token(keycloak: EmbeddedKeycloak) -> None:
    with pytest.raises(LoginRefused):
        browser_login(keycloak.issuer, "alice", otp=True, otp_code="000000")
