"""A test project reading Mandate's documents two ways: a ``create_agent`` agent with the ready
``authorized_search`` tool, and a hand-built graph with the ``AuthorizedDocuments`` retriever."""

from __future__ import annotations

import os
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from mandate.sdk import AuthorizedDocuments, GatedState, MandateGate, authorized_search, graph_context


def librarian() -> Any:
    model = ChatOpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"], model="double", max_retries=0)
    return create_agent(model, tools=[authorized_search(agent="librarian")], middleware=[MandateGate(agent="librarian")])


class ReaderState(GatedState, total=False):
    titles: list[str]


async def read(state: ReaderState, runtime: Runtime) -> dict[str, Any]:
    question = next(str(m.content) for m in reversed(state["messages"]) if isinstance(m, HumanMessage))
    retriever = AuthorizedDocuments(context=await graph_context(runtime), requester=state["principal"], agent="librarian", k=10)
    return {"titles": sorted({document.metadata["title"] for document in await retriever.ainvoke(question)})}


reader = StateGraph(ReaderState)
reader.add_node("read", read)
reader.add_edge(START, "read")
reader.add_edge("read", END)
