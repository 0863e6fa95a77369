"""The built-in graphs, assembled from the public SDK and the built-in nodes."""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING

from mandate.graphs.builder import ASSISTANT_ID, SUPERVISOR_ID, assemble_single, assemble_supervisor

if _TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

__all__ = ["ASSISTANT_ID", "SUPERVISOR_ID", "assemble_single", "assemble_supervisor", "build_graphs"]


def build_graphs(*, checkpointer: BaseCheckpointSaver | None = None) -> dict[str, CompiledStateGraph]:
    """The compiled graphs by assistant id (``mandate``, ``supervisor``), sharing ``checkpointer``."""
    return {
        ASSISTANT_ID: assemble_single(checkpointer=checkpointer),
        SUPERVISOR_ID: assemble_supervisor(checkpointer=checkpointer),
    }
