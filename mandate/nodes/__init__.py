"""Graph nodes: pure functions of state and the typed runtime context."""

from mandate.nodes.consent import after_consent, consent_node
from mandate.nodes.planner import LlmPlanner, OfflinePlanner, Plan, Planner, planner_node
from mandate.nodes.responder import LlmResponder, OfflineResponder, Responder, responder_node
from mandate.nodes.retriever import RETRIEVER_AGENT, retriever_node
from mandate.nodes.step_up import step_up_node
from mandate.nodes.tool_executor import tool_executor_node

__all__ = [
    "RETRIEVER_AGENT",
    "LlmPlanner",
    "LlmResponder",
    "OfflinePlanner",
    "OfflineResponder",
    "Plan",
    "Planner",
    "Responder",
    "after_consent",
    "consent_node",
    "planner_node",
    "responder_node",
    "retriever_node",
    "step_up_node",
    "tool_executor_node",
]
