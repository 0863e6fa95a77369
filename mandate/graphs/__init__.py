"""Graphs: the state schema, the runtime context and the compiled graph."""

from __future__ import annotations

import typing

from mandate.graphs.errors import GraphError, PrincipalImmutableError
from mandate.graphs.state import (
    ASSISTANT_ID,
    SUPERVISOR_ID,
    ContextChunk,
    GraphContext,
    MandateState,
    ProposedCall,
    ReviewError,
    ToolOutcome,
)

if typing.TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

__all__ = [
    "ASSISTANT_ID",
    "SUPERVISOR_ID",
    "ContextChunk",
    "GraphContext",
    "GraphError",
    "MandateState",
    "PrincipalImmutableError",
    "ProposedCall",
    "ReviewError",
    "ToolOutcome",
    "build_graphs",
]


def build_graphs(*, checkpointer: BaseCheckpointSaver | None = None) -> dict[str, CompiledStateGraph]:
    """The compiled graphs by assistant id (``mandate``, ``supervisor``), sharing ``checkpointer``."""
    # Imported here, not at the top: the nodes import this package's state schema.
    from mandate.graphs.builder import assemble_single, assemble_supervisor

    return {
        ASSISTANT_ID: assemble_single(checkpointer=checkpointer),
        SUPERVISOR_ID: assemble_supervisor(checkpointer=checkpointer),
    }
