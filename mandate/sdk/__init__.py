"""The public SDK for graph authors: everything a graph needs to run under Mandate's controls.

    from mandate.sdk import GraphContext, MandateGate, delegated_credentials, graph_context

- :func:`graph_context`: in any node or hook, ``await graph_context(runtime)`` is the runtime context
  (:class:`GraphContext`): the verified caller, the thread, and the services the gate uses, whether
  the graph runs under ``mandate serve`` or under ``langgraph dev``. Never holds a token a graph can read.
- :class:`MandateGate`: agent middleware for LangChain's ``create_agent``; every tool call passes
  Mandate's gate (grants, step-up, consent/approval, write-ahead audit, delegated token).
- :func:`api_tool`: a tool that POSTs its arguments to the API its policy names, with the
  delegated token and the call's idempotency key.
- :func:`secured_tool_node` and :class:`GatedState`: the same gate as a node of a hand-built ``StateGraph``.
- :func:`retrieve_authorized`: chunks the requester and the agent may both read (OpenFGA), nothing else;
  :class:`AuthorizedDocuments` is the same as a LangChain ``BaseRetriever``, :func:`authorized_search` as a ready tool.
- :class:`McpTools`: the tools of a remote MCP server named in ``mandate.yaml``, listed and called
  with tokens exchanged for exactly that server (RFC 9728 discovery, RFC 8707 resource).
- :func:`delegated_credentials`: inside a gated tool, the short-lived token for its API and the
  call's idempotency key.
- The state contract (:class:`MandateState`, :func:`write_once`) and the interrupt payloads
  (:class:`ReviewRequest`, :class:`StepUpRequest`, :class:`ReauthenticateRequest`).
- :mod:`vocabulary`: how OpenFGA objects are spelled (``vocabulary.agent("desk")`` is ``agent:desk``).
- The nodes the built-in graphs are assembled from (``make_planner``, ``make_retriever``,
  ``make_step_up``, ``make_consent``, ``make_tool_executor``, ``responder_node``), so that either
  graph can be rebuilt, or varied, from this module alone.
"""

from mandate.auth import Principal, PrincipalState, vocabulary
from mandate.contract import ContextChunk, GraphContext, MandateState, ProposedCall, ToolOutcome, write_once
from mandate.gate import ReauthenticateRequest, ReviewRequest, StepUpRequest
from mandate.nodes import (
    LlmPlanner,
    LlmResponder,
    Node,
    OfflinePlanner,
    OfflineResponder,
    after_consent,
    make_consent,
    make_planner,
    make_retriever,
    make_step_up,
    make_tool_executor,
    responder_node,
    retrieve_authorized,
)
from mandate.sdk.api_tool import api_tool, openapi_tools
from mandate.sdk.context import graph_context
from mandate.sdk.credentials import CallCredentials, delegated_credentials
from mandate.sdk.mcp import McpTools
from mandate.sdk.retriever import AuthorizedDocuments, authorized_search
from mandate.sdk.middleware import GatedAgentState, MandateGate
from mandate.sdk.tool_node import GatedState, secured_tool_node

__all__ = [
    "AuthorizedDocuments",
    "CallCredentials",
    "ContextChunk",
    "GatedAgentState",
    "GatedState",
    "GraphContext",
    "LlmPlanner",
    "LlmResponder",
    "MandateGate",
    "MandateState",
    "McpTools",
    "Node",
    "OfflinePlanner",
    "OfflineResponder",
    "Principal",
    "PrincipalState",
    "ProposedCall",
    "ReauthenticateRequest",
    "ReviewRequest",
    "StepUpRequest",
    "ToolOutcome",
    "after_consent",
    "api_tool",
    "authorized_search",
    "delegated_credentials",
    "graph_context",
    "make_consent",
    "make_planner",
    "make_retriever",
    "make_step_up",
    "make_tool_executor",
    "openapi_tools",
    "responder_node",
    "retrieve_authorized",
    "secured_tool_node",
    "vocabulary",
    "write_once",
]
