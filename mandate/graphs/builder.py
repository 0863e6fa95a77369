"""Graph assembly: planner → retriever → step-up → consent → tool executor → responder."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from mandate.graphs.state import ASSISTANT_ID, GraphContext, MandateState
from mandate.nodes import (
    after_consent,
    consent_node,
    planner_node,
    responder_node,
    retriever_node,
    step_up_node,
    tool_executor_node,
)

__all__ = ["assemble"]

Node = Callable[[MandateState, Runtime[GraphContext]], Awaitable[dict[str, Any]]]


def _traced(name: str, node: Node) -> Node:
    """Wrap ``node`` in a span; an interrupt is a pause, not an error."""

    @functools.wraps(node)
    async def traced(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
        ctx = runtime.context
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


def assemble(*, checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    """The compiled Mandate graph (assistant id ``mandate``)."""
    graph = StateGraph(MandateState, context_schema=GraphContext)
    nodes: dict[str, Node] = {
        "planner": planner_node,
        "retriever": retriever_node,
        "step_up": step_up_node,
        "consent": consent_node,
        "tool_executor": tool_executor_node,
        "responder": responder_node,
    }
    for name, node in nodes.items():
        graph.add_node(name, _traced(name, node))
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "retriever")
    graph.add_edge("retriever", "step_up")
    graph.add_edge("step_up", "consent")
    graph.add_conditional_edges("consent", after_consent, ["consent", "tool_executor"])
    graph.add_edge("tool_executor", "responder")
    graph.add_edge("responder", END)
    return graph.compile(checkpointer=checkpointer, name=ASSISTANT_ID)
