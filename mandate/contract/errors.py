"""Errors raised by the SDK contract inside a run.

    GraphError
    └── PrincipalImmutableError   code=principal_immutable (a node or input tried to change the requester)
"""

from mandate.errors import AppError

__all__ = ["GraphError", "PrincipalImmutableError"]


class GraphError(AppError):
    """Raised when a run cannot proceed."""

    code = "graph_error"


class PrincipalImmutableError(GraphError):
    """Raised when anything tries to replace the principal of a thread once set."""

    code = "principal_immutable"
