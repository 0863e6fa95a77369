"""Graphs: the state schema, the runtime context and the compiled graph."""

from __future__ import annotations

import typing

from mandate.graphs.errors import GraphError, PrincipalImmutableError
from mandate.graphs.state import (
    ASSISTANT_ID,
    ContextChunk,
    Decision,
    GraphContext,
    MandateState,
    ProposedCall,
    ToolOutcome,
)

if typing.TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

__all__ = [
    "ASSISTANT_ID",
    "ContextChunk",
    "Decision",
    "GraphContext",
    "GraphError",
    "MandateState",
    "PrincipalImmutableError",
    "ProposedCall",
    "ToolOutcome",
    "build_graph",
]


def build_graph(*, checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    """The compiled Mandate graph (assistant id ``mandate``) with ``checkpointer``."""
    # Imported here, not at the top: the nodes import this package's state schema.
    from mandate.graphs.builder import assemble

    return assemble(checkpointer=checkpointer)
