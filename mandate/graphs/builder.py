"""The built-in graphs' assembly: the single pipeline and the multi-agent supervisor, from the same nodes.

They are builders (``StateGraph``), named in this folder's ``langgraph.json``: Mandate serves them
like any project's graphs, compiled with its checkpointer.
"""

from __future__ import annotations

import functools
from typing import Any

from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from mandate.sdk import GraphContext, MandateState, graph_context, vocabulary
from mandate.sdk import (
    Node,
    after_consent,
    make_consent,
    make_planner,
    make_retriever,
    make_step_up,
    make_tool_executor,
    responder_node,
)

__all__ = ["single", "supervisor"]

RETRIEVER = vocabulary.agent("retriever")
EXECUTOR = vocabulary.agent("executor")
RESEARCHER = vocabulary.agent("researcher")
OPERATOR = vocabulary.agent("operations")


def _traced(name: str, node: Node) -> Node:
    """Wrap ``node`` in a span; an interrupt is a pause, not an error."""

    @functools.wraps(node)
    async def traced(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
        ctx = await graph_context(runtime)  # Mandate's run engine passed it, or langgraph dev's provider builds it
        runtime = runtime.override(context=ctx)
        with ctx.tracer.start_as_current_span(
            f"node {name}", record_exception=False, set_status_on_exception=False
        ) as span:
            span.set_attribute("mandate.node", name)
            span.set_attribute("gen_ai.conversation.id", ctx.thread_id)
            span.set_attribute("mandate.caller", ctx.pseudonym(ctx.caller))
            try:
                return await node(state, runtime)
            except GraphBubbleUp:
                span.set_attribute("mandate.interrupted", True)
                raise
            except Exception as exc:
                span.set_attribute("mandate.error.code", getattr(exc, "code", type(exc).__name__))
                raise

    return traced


def _graph() -> StateGraph:
    # No context_schema: langgraph dev would build a GraphContext from a client's JSON (and fail);
    # every node takes Mandate's context through graph_context instead.
    return StateGraph(MandateState)


def _add(graph: StateGraph, nodes: dict[str, Node]) -> None:
    for name, node in nodes.items():
        graph.add_node(name, _traced(name, node))


def _approval_flow(graph: StateGraph, *, executor: str, after: str) -> None:
    """step-up → consent, looping until every decision is settled → executor acting as ``executor`` → ``after``."""
    _add(
        graph,
        {
            "step_up": make_step_up(executor=executor),
            "consent": make_consent(executor=executor),
            "tool_executor": make_tool_executor(agent=executor),
        },
    )
    graph.add_edge("step_up", "consent")
    graph.add_conditional_edges("consent", after_consent, ["step_up", "tool_executor"])
    graph.add_edge("tool_executor", after)


def single() -> StateGraph:
    """``mandate``: one pipeline; the retriever agent reads, the executor agent acts."""
    graph = _graph()
    _add(
        graph,
        {
            "planner": make_planner(executor=EXECUTOR),
            "retriever": make_retriever(agent=RETRIEVER),
            "responder": responder_node,
        },
    )
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "retriever")
    graph.add_edge("retriever", "step_up")
    _approval_flow(graph, executor=EXECUTOR, after="responder")
    graph.add_edge("responder", END)
    return graph


def _route(state: MandateState) -> str:
    if state.get("proposed"):
        return "operations"
    return "research" if state.get("question") else "responder"


def supervisor() -> StateGraph:
    """``supervisor``: routes each request to a specialised agent, run as a subgraph.

    The research agent (``agent:researcher``) retrieves with its own, narrower grants; the
    operations agent (``agent:operations``) calls tools with its own grants and its own OAuth
    client, so the delegated token's ``act`` and the audit name it. An action runs only if the
    user and that agent may both do it.
    """
    research = _graph()
    _add(research, {"retrieve": make_retriever(agent=RESEARCHER)})
    research.add_edge(START, "retrieve")
    research.add_edge("retrieve", END)

    operations = _graph()
    operations.add_edge(START, "step_up")
    _approval_flow(operations, executor=OPERATOR, after=END)

    graph = _graph()
    _add(graph, {"supervisor": make_planner(executor=OPERATOR), "responder": responder_node})
    graph.add_node("research", research.compile(name="research"))
    graph.add_node("operations", operations.compile(name="operations"))
    graph.add_edge(START, "supervisor")
    graph.add_conditional_edges("supervisor", _route, ["research", "operations", "responder"])
    graph.add_edge("research", "responder")
    graph.add_edge("operations", "responder")
    graph.add_edge("responder", END)
    return graph
