"""The retriever node: only chunks OpenFGA allows for (requester, retriever agent) enter the state."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from mandate.graphs.state import ContextChunk, GraphContext, MandateState

__all__ = ["RETRIEVER_AGENT", "retriever_node"]

RETRIEVER_AGENT = "agent:retriever"
TOP_K = 4


async def retriever_node(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """Retrieve authorized context for the planned question, if there is one."""
    question = state.get("question")
    principal = state["principal"]
    if not question or principal is None:
        return {"context": []}
    chunks = await runtime.context.retriever.retrieve(
        question,
        user=f"user:{principal['subject']}",
        tenant=principal["tenant"],
        agent=RETRIEVER_AGENT,
        k=TOP_K,
    )
    return {
        "context": [
            ContextChunk(
                doc_id=c.doc_id, title=c.title, chunk_index=c.chunk_index, content=c.content, similarity=c.similarity
            )
            for c in chunks
        ]
    }
