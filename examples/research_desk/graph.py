"""A hand-built ``StateGraph`` under Mandate: authorized retrieval, then tool calls through the gate.

    START → retrieve → plan → tools (when the plan calls one) → END

``retrieve`` keeps only chunks the user AND this agent (``agent:desk``) may read; ``tools`` is
Mandate's secured tool node, so a ticket waits for the user's consent and is opened once with a
token delegated to this agent. ``file_ticket`` is an operation of the tickets API's OpenAPI
document, turned into a tool; its policy needs no decision, but every other gate still holds. No model is needed: the plan is a rule, to keep the example short.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from mandate.sdk import (
    ContextChunk,
    GatedState,
    GraphContext,
    delegated_credentials,
    graph_context,
    openapi_tools,
    retrieve_authorized,
    secured_tool_node,
)

AGENT = "agent:desk"


class DeskState(GatedState, total=False):
    context: list[ContextChunk]


@tool
async def open_ticket(title: str) -> str:
    """Open a ticket in the tickets system."""
    credentials = delegated_credentials()
    assert credentials.token is not None
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            credentials.token.audience,
            json={"title": title},
            headers={"Authorization": f"Bearer {credentials.token.access_token}", "Idempotency-Key": credentials.idempotency_key},
        )
    response.raise_for_status()
    return f"Ticket {response.json()['id']} opened."


# An HTTP API tool straight from the API's OpenAPI document; its URL and policy are in mandate.yaml.
[file_ticket] = openapi_tools(Path(__file__).parent / "tickets.openapi.yaml", {"file_ticket": "createTicket"})


def _question(state: DeskState) -> str:
    return next((str(m.content) for m in reversed(state["messages"]) if isinstance(m, HumanMessage)), "")


async def retrieve(state: DeskState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    requester = state.get("principal")
    if requester is None:
        return {"context": []}
    return {"context": await retrieve_authorized(await graph_context(runtime), requester, _question(state), agent=AGENT)}


def plan(state: DeskState) -> dict[str, Any]:
    question = _question(state)
    if "ticket" in question.lower():
        tool_name = "file_ticket" if question.lower().startswith("file") else "open_ticket"
        args: dict[str, Any] = {"title": question[:200]}
        if tool_name == "file_ticket":
            args["priority"] = "low"
        call = {"name": tool_name, "args": args, "id": f"call_{uuid.uuid4().hex[:16]}"}
        return {"messages": [AIMessage(content="", tool_calls=[call])]}
    titles = list(dict.fromkeys(chunk["title"] for chunk in state.get("context", [])))
    answer = f"Sources you may read: {'; '.join(titles)}." if titles else "I found no documents you may read on this."
    return {"messages": [AIMessage(content=answer)]}


def _after_plan(state: DeskState) -> str:
    last = state["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else END


builder = StateGraph(DeskState)  # the context is Mandate's (graph_context), never a client's
builder.add_node("retrieve", retrieve)
builder.add_node("plan", plan)
builder.add_node("tools", secured_tool_node([open_ticket, file_ticket], agent=AGENT))
builder.add_edge(START, "retrieve")
builder.add_edge("retrieve", "plan")
builder.add_conditional_edges("plan", _after_plan, ["tools", END])
builder.add_edge("tools", END)
