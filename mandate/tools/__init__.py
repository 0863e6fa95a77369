"""Tools: the registry of tools and their policies, and the calls to downstream APIs."""

from mandate.tools.downstream import call_downstream
from mandate.tools.errors import DownstreamError, InvalidToolArgsError, McpServerRefusedError, ToolError, UnknownToolError
from mandate.tools.registry import (
    ApprovalPolicy,
    EditRule,
    ToolRegistry,
    ToolSpec,
    args_hash,
    decision_refusal,
    edit_within_policy,
)

__all__ = [
    "ApprovalPolicy",
    "DownstreamError",
    "EditRule",
    "InvalidToolArgsError",
    "McpServerRefusedError",
    "ToolError",
    "ToolRegistry",
    "ToolSpec",
    "UnknownToolError",
    "args_hash",
    "call_downstream",
    "decision_refusal",
    "edit_within_policy",
]
