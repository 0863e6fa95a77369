"""Errors of the tools room.

    ToolError
    ├── UnknownToolError        code=unknown_tool        (denied before anything happens)
    ├── InvalidToolArgsError    code=invalid_tool_args
    ├── DownstreamError         code=downstream_failed   (the downstream API failed or refused)
    └── McpServerRefusedError   code=mcp_server_refused  (an MCP server's metadata does not match its configuration)
"""

from mandate.errors import AppError

__all__ = ["DownstreamError", "InvalidToolArgsError", "McpServerRefusedError", "ToolError", "UnknownToolError"]


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


class McpServerRefusedError(ToolError):
    """Raised when an MCP server's protected resource metadata (RFC 9728) is missing or does not match
    its configuration (another resource, no trusted authorization server): no token is sent to it."""

    code = "mcp_server_refused"
