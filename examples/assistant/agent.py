"""An assistant built with LangChain's ``create_agent`` and served by Mandate.

The graph is ordinary LangChain code; a few lines make it Mandate's: ``MandateGate`` puts every tool
call through the gate (grants, step-up, consent or four-eyes approval, write-ahead audit, a delegated
token), ``McpTools`` adds the tools of a remote MCP server; both find the verified caller through
``graph_context``, under ``mandate serve`` and under ``langgraph dev`` alike. The policies live in
``mandate.yaml`` beside this file.
"""

from __future__ import annotations

import os

import httpx
from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from mandate.sdk import MandateGate, McpTools, api_tool, delegated_credentials

SYSTEM_PROMPT = "You help employees with tickets, invoices, notes and currency questions. Use the tools; never invent arguments."


@tool
def convert_currency(amount: float, rate: float) -> str:
    """Convert ``amount`` at ``rate``."""
    return f"{amount * rate:.2f}"


@tool
async def open_ticket(title: str, priority: str = "normal") -> str:
    """Open a ticket in the tickets system."""
    credentials = delegated_credentials()  # a token for the tickets API only, for this user, acting as this agent
    assert credentials.token is not None
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            credentials.token.audience,
            json={"title": title, "priority": priority},
            headers={"Authorization": f"Bearer {credentials.token.access_token}", "Idempotency-Key": credentials.idempotency_key},
        )
    response.raise_for_status()
    return f"Ticket {response.json()['id']} opened."


class Invoice(BaseModel):
    """An invoice to pay."""

    amount: float = Field(gt=0, le=1_000_000)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    recipient: str = Field(min_length=1, max_length=200)
    reference: str = Field(default="", max_length=200)


pay_invoice = api_tool(name="pay_invoice", description="Pay an invoice from the company account.", args_schema=Invoice)


def make_graph():  # noqa: ANN201  (a LangGraph graph factory)
    """The agent; the model endpoint comes from the environment (any OpenAI-compatible server)."""
    model = ChatOpenAI(
        model=os.environ.get("ASSISTANT_MODEL", "gpt-4o-mini"),
        base_url=os.environ.get("OPENAI_BASE_URL") or None,
        temperature=0,
    )
    return create_agent(
        model,
        tools=[convert_currency, open_ticket, pay_invoice],
        system_prompt=SYSTEM_PROMPT,
        # The notes MCP server's tools (mcp_servers.notes in mandate.yaml), gated like the others.
        middleware=[MandateGate(agent="assistant"), McpTools("notes", agent="assistant")],
    )
