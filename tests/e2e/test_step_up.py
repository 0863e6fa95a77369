"""A payment needs MFA within 5 minutes: the run pauses with kind ``step_up`` until the token meets it."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.utils.threads import ask, new_thread, resume


def test_payment_with_password_token_pauses_for_step_up(client: httpx.Client, token: Callable[..., str]) -> None:
    alice = token("alice")
    values = ask(client, alice, new_thread(client, alice), "Send 250 EUR to Initech Services GmbH").json()
    [pending] = values["__interrupt__"]
    assert pending["value"]["kind"] == "step_up"
    assert pending["value"]["acr_values"] == "urn:mandate:acr:mfa"
    assert pending["value"]["max_age"] == 300


def test_payment_resumed_with_weak_token_stays_at_step_up(client: httpx.Client, token: Callable[..., str]) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    ask(client, alice, thread, "Send 250 EUR to Initech Services GmbH")
    claimed = {"acr": "urn:mandate:acr:mfa", "amr": ["otp"]}  # a claim in the body is not a login
    values = resume(client, token("alice"), thread, claimed).json()
    assert values["__interrupt__"][0]["value"]["kind"] == "step_up"


def test_payment_after_mfa_moves_on_to_approval_which_requester_cannot_give(
    client: httpx.Client, token: Callable[..., str]
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    ask(client, alice, thread, "Send 250 EUR to Initech Services GmbH")
    alice_mfa = token("alice", otp="000000")
    values = resume(client, alice_mfa, thread, {"done": True}).json()
    approval = values["__interrupt__"][0]["value"]
    assert approval["kind"] == "approval"
    assert approval["policy"] == "approver"
    values = resume(client, alice_mfa, thread, {"decisions": [{"type": "approve"}]}).json()
    assert values["__interrupt__"][0]["value"]["error"] == "requester_cannot_approve"
    assert "outcomes" not in values or values["outcomes"] == []
