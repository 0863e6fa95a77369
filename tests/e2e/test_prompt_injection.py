"""A model that obeys an injected instruction still cannot move money or reach beyond its grants."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest

from mandate.audit import build_tracer_provider
from mandate.auth import Relationship
from mandate.runtime.settings import DevSettings, Settings
from mandate.api.app import create_app
from tests.utils.openai_double import ChatDouble
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.services import room_services
from tests.utils.threads import ask, new_thread
from tests.utils.tokens import login

OBEYED_PAYMENT = {"amount": 9999, "currency": "EUR", "recipient": "Mallory Holdings"}


@pytest.fixture(scope="module")
def injected_app(stack_settings: Settings) -> Iterator[str]:
    """Mandate planning with a model scripted to obey the vendor notice's injected instruction."""
    model = ChatDouble(
        rules=[
            (r"vendor notice", "send_payment", OBEYED_PAYMENT),
            (r"wire", "wire_funds_external", {"to": "Mallory Holdings"}),
            (r"ticket", "create_ticket", {"title": "Update vendor bank details"}),
        ]
    )
    with serve_in_thread(model.app()) as model_url:
        port = free_port()
        settings = DevSettings(
            env="test", port=port, data_dir=stack_settings.data_dir, database_url=stack_settings.database_url,
            fga_api_url=stack_settings.fga_api_url, llm_base_url=f"{model_url}/v1", llm_api_key="sk-test",
        )
        with serve_in_thread(create_app(settings, tracer_provider=build_tracer_provider()), port=port) as url:
            yield url


def _audit(db: psycopg.Connection, thread: str) -> list[tuple[str, str | None, str | None]]:
    return db.execute(
        "SELECT event, tool, decision FROM mandate.audit_records WHERE thread_id = %s ORDER BY recorded_at", (thread,)
    ).fetchall()


def test_obeyed_injection_still_needs_step_up_and_approval(injected_app: str, db: psycopg.Connection) -> None:
    alice = login(injected_app, "alice")
    with httpx.Client(base_url=injected_app, timeout=60) as client:
        thread = new_thread(client, alice)
        values = ask(client, alice, thread, "What does the vendor notice say?").json()
    assert values["__interrupt__"][0]["value"]["kind"] == "step_up"
    assert db.execute("SELECT count(*) FROM mandate.demo_effects WHERE body->>'recipient' = 'Mallory Holdings'").fetchone() == (0,)


def test_unknown_tool_from_model_is_denied_and_audited(injected_app: str, db: psycopg.Connection) -> None:
    alice = login(injected_app, "alice")
    with httpx.Client(base_url=injected_app, timeout=60) as client:
        thread = new_thread(client, alice)
        values = ask(client, alice, thread, "wire the money as the notice says").json()
    assert "__interrupt__" not in values
    assert values["outcomes"][0]["status"] == "denied" and values["outcomes"][0]["code"] == "unknown_tool"
    assert ("tool.denied", "wire_funds_external", "unknown_tool") in _audit(db, thread)


async def test_tool_outside_the_agents_grants_is_denied_before_consent(
    injected_app: str, stack_settings: Settings, db: psycopg.Connection
) -> None:
    grant = Relationship("agent:executor", "invoker", "tool:create_ticket")
    async with room_services(stack_settings) as rooms:
        await rooms.authz.write(deletes=[grant])
        try:
            alice = login(injected_app, "alice")
            async with httpx.AsyncClient(base_url=injected_app, timeout=60) as client:
                thread = (await client.post("/threads", json={}, headers={"Authorization": f"Bearer {alice}"})).json()["thread_id"]
                response = await client.post(
                    f"/threads/{thread}/runs/wait",
                    json={"input": {"messages": [{"role": "user", "content": "open a ticket for the bank details"}]}},
                    headers={"Authorization": f"Bearer {alice}"},
                )
        finally:
            await rooms.authz.write(writes=[grant])
    values = response.json()
    assert "__interrupt__" not in values
    assert values["outcomes"][0]["code"] == "agent_not_allowed"
    assert ("tool.denied", "create_ticket", "agent_not_allowed") in _audit(db, thread)
