"""The public SDK for graph authors: everything a graph needs to run under Mandate's controls.

    from mandate.sdk import GraphContext, MandateGate, delegated_credentials

- :class:`GraphContext`: the runtime context (``context_schema=GraphContext``): the verified caller,
  the thread, and the services the gate uses. Never holds a token a graph can read.
- :class:`MandateGate`: agent middleware for LangChain's ``create_agent``; every tool call passes
  Mandate's gate (grants, step-up, consent/approval, write-ahead audit, delegated token).
- :func:`api_tool`: a tool that POSTs its arguments to the API its policy names, with the
  delegated token and the call's idempotency key.
- :class:`McpTools`: the tools of a remote MCP server named in ``mandate.yaml``, listed and called
  with tokens exchanged for exactly that server (RFC 9728 discovery, RFC 8707 resource).
- :func:`delegated_credentials`: inside a gated tool, the short-lived token for its API and the
  call's idempotency key.
- The state contract (:class:`MandateState`, :func:`write_once`) and the interrupt payloads
  (:class:`ReviewRequest`, :class:`StepUpRequest`, :class:`ReauthenticateRequest`).
"""

from mandate.auth import Principal, PrincipalState
from mandate.contract import GraphContext, MandateState, ProposedCall, ToolOutcome, write_once
from mandate.gate import ReauthenticateRequest, ReviewRequest, StepUpRequest
from mandate.sdk.api_tool import api_tool
from mandate.sdk.credentials import CallCredentials, delegated_credentials
from mandate.sdk.mcp import McpTools
from mandate.sdk.middleware import GatedAgentState, MandateGate

__all__ = [
    "CallCredentials",
    "GatedAgentState",
    "GraphContext",
    "MandateGate",
    "MandateState",
    "McpTools",
    "Principal",
    "PrincipalState",
    "ProposedCall",
    "ReauthenticateRequest",
    "ReviewRequest",
    "StepUpRequest",
    "ToolOutcome",
    "api_tool",
    "delegated_credentials",
    "write_once",
]
