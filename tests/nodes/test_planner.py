"""The offline planner handles the demo intents deterministically."""

from __future__ import annotations

import pytest

from mandate.nodes import OfflinePlanner
from mandate.tools import demo_tools

TOOLS = demo_tools(tickets_api_url="http://t", payments_api_url="http://p")


async def test_offline_planner_question_becomes_search() -> None:
    plan = await OfflinePlanner().plan("Summarize the latest contract terms for ACME.", tools=TOOLS)
    assert plan.question == "Summarize the latest contract terms for ACME."
    assert plan.calls == ()


async def test_offline_planner_ticket_request_proposes_create_ticket() -> None:
    plan = await OfflinePlanner().plan("Open a ticket: VPN is down", tools=TOOLS)
    assert plan.question is None
    assert plan.calls == (("create_ticket", {"title": "VPN is down", "description": "Open a ticket: VPN is down"}),)


@pytest.mark.parametrize(
    ("text", "amount", "currency", "recipient"),
    [
        ("Send 250 EUR to Initech Services GmbH", 250.0, "EUR", "Initech Services GmbH"),
        ("please pay $99.50 to Hooli", 99.5, "USD", "Hooli"),
    ],
)
async def test_offline_planner_payment_request_proposes_send_payment(
    text: str, amount: float, currency: str, recipient: str
) -> None:
    plan = await OfflinePlanner().plan(text, tools=TOOLS)
    assert plan.calls == (("send_payment", {"amount": amount, "currency": currency, "recipient": recipient}),)
