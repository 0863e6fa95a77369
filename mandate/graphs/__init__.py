"""Graphs: the state schema, the runtime context and the compiled graph."""

from mandate.graphs.errors import GraphError, InvalidResumeError, PrincipalImmutableError
from mandate.graphs.state import ContextChunk, GraphContext, MandateState, ProposedCall, ToolOutcome

from mandate.graphs.builder import ASSISTANT_ID, build_graph  # noqa: E402  (state first: nodes import it)

__all__ = [
    "ASSISTANT_ID",
    "ContextChunk",
    "GraphContext",
    "GraphError",
    "InvalidResumeError",
    "MandateState",
    "PrincipalImmutableError",
    "ProposedCall",
    "ToolOutcome",
    "build_graph",
]
