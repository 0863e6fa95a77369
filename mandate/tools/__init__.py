"""Tools: the registry of tools and their policies, and the calls to downstream APIs."""

from mandate.tools.downstream import call_downstream
from mandate.tools.errors import DownstreamError, InvalidToolArgsError, McpServerRefusedError, ToolError, UnknownToolError
from mandate.tools.registry import (
    ApprovalPolicy,
    CreateTicketArgs,
    EditRule,
    SearchDocumentsArgs,
    SendPaymentArgs,
    ToolRegistry,
    ToolSpec,
    args_hash,
    decision_refusal,
    demo_tools,
    edit_within_policy,
)

__all__ = [
    "ApprovalPolicy",
    "CreateTicketArgs",
    "DownstreamError",
    "EditRule",
    "InvalidToolArgsError",
    "McpServerRefusedError",
    "SearchDocumentsArgs",
    "SendPaymentArgs",
    "ToolError",
    "ToolRegistry",
    "ToolSpec",
    "UnknownToolError",
    "args_hash",
    "call_downstream",
    "decision_refusal",
    "demo_tools",
    "edit_within_policy",
]
