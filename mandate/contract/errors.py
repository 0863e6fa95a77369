"""Errors raised by the SDK contract inside a run.

    GraphError
    ├── PrincipalImmutableError     code=principal_immutable (a node or input tried to change the requester)
    └── MandateContextMissingError  code=mandate_context_missing (gated graph code run without Mandate's context)
"""

from mandate.errors import AppError

__all__ = ["GraphError", "MandateContextMissingError", "PrincipalImmutableError"]


class GraphError(AppError):
    """Raised when a run cannot proceed."""

    code = "graph_error"


class PrincipalImmutableError(GraphError):
    """Raised when anything tries to replace the principal of a thread once set."""

    code = "principal_immutable"


class MandateContextMissingError(GraphError):
    """Raised when gated graph code runs without Mandate's runtime context: it refuses to run."""

    code = "mandate_context_missing"
