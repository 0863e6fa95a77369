"""Errors of the graphs room.

    GraphError
    ├── PrincipalImmutableError   code=principal_immutable (a node or input tried to change the requester)
    └── InvalidResumeError        code=invalid_resume      (a resume value does not fit the pending interrupt)
"""

from mandate.errors import AppError

__all__ = ["GraphError", "InvalidResumeError", "PrincipalImmutableError"]


class GraphError(AppError):
    """Raised when a run cannot proceed."""

    code = "graph_error"


class PrincipalImmutableError(GraphError):
    """Raised when anything tries to replace the principal of a thread once set."""

    code = "principal_immutable"


class InvalidResumeError(GraphError):
    """Raised when a resume value does not answer the pending interrupt (wrong shape, count or caller)."""

    code = "invalid_resume"
