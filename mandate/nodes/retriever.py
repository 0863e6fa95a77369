"""The retriever node: only chunks OpenFGA allows for (requester, this agent) enter the state."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from mandate.audit import AuditEvent
from mandate.auth import AuthorizationUnavailableError, Principal
from mandate.graphs.state import ContextChunk, GraphContext, MandateState
from mandate.nodes.planner import Node

__all__ = ["make_retriever"]

TOP_K = 4


def make_retriever(*, agent: str) -> Node:
    """The retriever node reading as ``agent`` (an OpenFGA agent with ``reader_agent`` grants)."""

    async def retriever(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
        """Retrieve authorized context for the planned question, if there is one."""
        question = state.get("question")
        principal = state["principal"]
        if not question or principal is None:
            return {"context": []}
        ctx = runtime.context
        try:
            chunks = await ctx.retriever.retrieve(
                question, user=Principal.user_id_of(principal), tenant=principal["tenant"], agent=agent, k=TOP_K
            )
        except AuthorizationUnavailableError as exc:
            # Nothing was retrieved; the denial is on the record, and the run stops here (503) so
            # that it can be continued once OpenFGA answers again.
            await ctx.audit.record_denial(
                AuditEvent(
                    tenant=principal["tenant"], event="retrieval.denied", actor=ctx.pseudonym(ctx.caller),
                    thread_id=ctx.thread_id, agent=agent, decision=exc.code,
                    detail={"requester": ctx.pseudonym(principal)},
                )
            )
            raise
        return {
            "context": [
                ContextChunk(
                    doc_id=c.doc_id, title=c.title, chunk_index=c.chunk_index, content=c.content, similarity=c.similarity
                )
                for c in chunks
            ]
        }

    return retriever
