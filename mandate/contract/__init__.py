"""The contract between Mandate and graph code: state schema, runtime context, errors inside a run.

Nodes, the built-in graphs and the public SDK import it; it imports none of them.
"""

from mandate.contract.errors import GraphError, MandateContextMissingError, PrincipalImmutableError
from mandate.contract.state import (
    ContextChunk,
    GraphContext,
    MandateState,
    Plan,
    Planner,
    ProposedCall,
    Responder,
    ReviewError,
    ToolOutcome,
    write_once,
)

__all__ = [
    "ContextChunk",
    "GraphContext",
    "GraphError",
    "MandateContextMissingError",
    "MandateState",
    "Plan",
    "Planner",
    "PrincipalImmutableError",
    "ProposedCall",
    "Responder",
    "ReviewError",
    "ToolOutcome",
    "write_once",
]
