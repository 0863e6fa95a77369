"""The retriever node: only chunks OpenFGA allows for (requester, this agent) enter the state."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from mandate.audit import AuditEvent
from mandate.auth import AuthorizationUnavailableError, Principal, PrincipalState
from mandate.contract.state import ContextChunk, GraphContext, MandateState
from mandate.nodes.planner import Node

__all__ = ["make_retriever", "retrieve_authorized"]

TOP_K = 4


async def retrieve_authorized(
    context: GraphContext, requester: PrincipalState, query: str, *, agent: str, k: int = TOP_K
) -> list[ContextChunk]:
    """The ``k`` best chunks for ``query`` that ``requester`` and ``agent`` (``agent:<name>``) may both read.

    Vector similarity ranks; it never authorizes: every chunk is checked in OpenFGA for both.

    Raises:
        AuthorizationUnavailableError: OpenFGA could not decide; nothing is returned, the denial is audited.
    """
    try:
        chunks = await context.retriever.retrieve(
            query, user=Principal.user_id_of(requester), tenant=requester["tenant"], agent=agent, k=k
        )
    except AuthorizationUnavailableError as exc:
        # Nothing was retrieved; the denial is on the record, and the run stops here (503) so that
        # it can be continued once OpenFGA answers again.
        await context.audit.record_denial(
            AuditEvent(
                tenant=requester["tenant"], event="retrieval.denied", actor=context.pseudonym(context.caller),
                thread_id=context.thread_id, agent=agent, decision=exc.code,
                detail={"requester": context.pseudonym(requester)},
            )
        )
        raise
    return [
        ContextChunk(doc_id=c.doc_id, title=c.title, chunk_index=c.chunk_index, content=c.content, similarity=c.similarity)
        for c in chunks
    ]


def make_retriever(*, agent: str) -> Node:
    """The retriever node reading as ``agent`` (an OpenFGA agent with ``reader_agent`` grants)."""

    async def retriever(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
        """Retrieve authorized context for the planned question, if there is one."""
        question = state.get("question")
        principal = state["principal"]
        if not question or principal is None:
            return {"context": []}
        return {"context": await retrieve_authorized(runtime.context, principal, question, agent=agent, k=TOP_K)}

    return retriever
