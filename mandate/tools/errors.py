"""Errors of the tools room.

    ToolError
    ├── UnknownToolError        code=unknown_tool        (denied before anything happens)
    ├── InvalidToolArgsError    code=invalid_tool_args
    └── DownstreamError         code=downstream_failed   (the downstream API failed or refused)
"""

from mandate.errors import AppError

__all__ = ["DownstreamError", "InvalidToolArgsError", "ToolError", "UnknownToolError"]


class ToolError(AppError):
    """Raised when a tool cannot be looked up or called."""

    code = "tool_error"


class UnknownToolError(ToolError):
    """Raised when a tool name is not in the registry."""

    code = "unknown_tool"


class InvalidToolArgsError(ToolError):
    """Raised when a tool's arguments do not match its schema."""

    code = "invalid_tool_args"

    def __init__(self, message: str = "", *, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields
        """The offending argument names (never their values)."""


class DownstreamError(ToolError):
    """Raised when the downstream API answers with an error or cannot be reached."""

    code = "downstream_failed"
