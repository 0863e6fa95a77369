"""Only authorized documents reach the answer: alice reads the MSA, dave and carol learn nothing of it."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.utils.threads import ask, last_answer, new_thread

QUESTION = "Summarize the latest contract terms for ACME."
MSA_MARKERS = ("Master Services Agreement", "net 45", "Initech", "acme-msa")


def test_question_as_alice_answers_from_msa_and_cites_it(client: httpx.Client, token: Callable[..., str]) -> None:
    alice = token("alice")
    response = ask(client, alice, new_thread(client, alice), QUESTION)
    assert response.status_code == 200, response.text
    values = response.json()
    answer = last_answer(values)
    assert "net 45" in answer
    assert "Sources: ACME Master Services Agreement" in answer
    assert {chunk["doc_id"] for chunk in values["context"]} == {"acme-msa"}


@pytest.mark.parametrize("user", ["dave", "carol"])
def test_question_as_unauthorized_user_reveals_nothing_of_msa(
    client: httpx.Client, token: Callable[..., str], user: str
) -> None:
    bearer_token = token(user)
    response = ask(client, bearer_token, new_thread(client, bearer_token), QUESTION)
    assert response.status_code == 200, response.text
    body = response.text
    for marker in MSA_MARKERS:
        assert marker not in body
    assert all(chunk["doc_id"] != "acme-msa" for chunk in response.json()["context"])


def test_question_as_bob_reads_payroll_shared_only_with_him(client: httpx.Client, token: Callable[..., str]) -> None:
    question = "What was the gross payroll in October?"
    bob, alice = token("bob"), token("alice")
    assert "1,284,500" in last_answer(ask(client, bob, new_thread(client, bob), question).json())
    assert "1,284,500" not in ask(client, alice, new_thread(client, alice), question).text


def test_question_as_carol_answers_from_her_tenant_only(client: httpx.Client, token: Callable[..., str]) -> None:
    carol = token("carol")
    values = ask(client, carol, new_thread(client, carol), "What are the Globex contract terms?").json()
    assert "net 30" in last_answer(values)
    assert {chunk["doc_id"] for chunk in values["context"]} == {"globex-terms"}
