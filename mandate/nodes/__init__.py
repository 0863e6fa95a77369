"""Graph nodes: functions of state and the typed runtime context; factories bind the acting agent."""

from mandate.nodes.consent import after_consent, make_consent
from mandate.nodes.planner import LlmPlanner, Node, OfflinePlanner, make_planner
from mandate.nodes.responder import LlmResponder, OfflineResponder, responder_node
from mandate.nodes.retriever import make_retriever, retrieve_authorized
from mandate.nodes.step_up import make_step_up
from mandate.nodes.tool_executor import make_tool_executor

__all__ = [
    "LlmPlanner",
    "LlmResponder",
    "Node",
    "OfflinePlanner",
    "OfflineResponder",
    "after_consent",
    "make_consent",
    "make_planner",
    "make_retriever",
    "make_step_up",
    "make_tool_executor",
    "responder_node",
    "retrieve_authorized",
]
