"""A user sees, searches and resumes only their own threads, within their tenant."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.utils.threads import ask, bearer, new_thread, resume


@pytest.fixture()
def alices_paused_thread(client: httpx.Client, token: Callable[..., str]) -> str:
    alice = token("alice")
    thread = new_thread(client, alice)
    ask(client, alice, thread, "Open a ticket: laptop stolen")
    return thread


@pytest.mark.parametrize("user", ["bob", "carol"])
def test_other_user_cannot_read_alices_thread(
    client: httpx.Client, token: Callable[..., str], alices_paused_thread: str, user: str
) -> None:
    other = bearer(token(user))
    for path in (f"/threads/{alices_paused_thread}", f"/threads/{alices_paused_thread}/state"):
        response = client.get(path, headers=other)
        assert response.status_code == 404
        assert response.json()["code"] == "thread_not_found"


def test_other_user_cannot_find_alices_thread_by_search(
    client: httpx.Client, token: Callable[..., str], alices_paused_thread: str
) -> None:
    found = client.post("/threads/search", json={"limit": 1000}, headers=bearer(token("bob"))).json()
    assert alices_paused_thread not in {t["thread_id"] for t in found}
    mine = client.post("/threads/search", json={"status": "interrupted", "limit": 1000}, headers=bearer(token("alice")))
    assert alices_paused_thread in {t["thread_id"] for t in mine.json()}


def test_other_user_cannot_resume_or_approve_alices_thread(
    client: httpx.Client, token: Callable[..., str], alices_paused_thread: str
) -> None:
    bob = token("bob")
    response = resume(client, bob, alices_paused_thread, {"decisions": [{"type": "approve"}]})
    assert response.status_code == 404
    state = client.get(f"/threads/{alices_paused_thread}/state", headers=bearer(token("alice"))).json()
    assert state["next"] == ["consent"]


def test_other_user_cannot_delete_alices_thread(
    client: httpx.Client, token: Callable[..., str], alices_paused_thread: str
) -> None:
    assert client.delete(f"/threads/{alices_paused_thread}", headers=bearer(token("bob"))).status_code == 404
    assert client.get(f"/threads/{alices_paused_thread}", headers=bearer(token("alice"))).status_code == 200


def test_run_input_cannot_set_the_principal(client: httpx.Client, token: Callable[..., str]) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    body = {
        "input": {
            "messages": [{"role": "user", "content": "hi"}],
            "principal": {"issuer": "x", "subject": "bob", "tenant": "acme", "roles": [], "groups": [], "client_id": ""},
        }
    }
    response = client.post(f"/threads/{thread}/runs/wait", json=body, headers=bearer(alice))
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_run_with_both_input_and_command_is_rejected(client: httpx.Client, token: Callable[..., str]) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    body = {"input": {"messages": [{"role": "user", "content": "hi"}]}, "command": {"resume": 1}}
    response = client.post(f"/threads/{thread}/runs/wait", json=body, headers=bearer(alice))
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_run"


def test_new_input_on_paused_thread_is_refused(
    client: httpx.Client, token: Callable[..., str], alices_paused_thread: str
) -> None:
    response = ask(client, token("alice"), alices_paused_thread, "never mind, summarize the MSA")
    assert response.status_code == 409
    assert response.json()["code"] == "thread_interrupted"
