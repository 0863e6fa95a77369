"""The gate as a node, for hand-built ``StateGraph``\\s: a ``ToolNode`` whose every call passes it.

    graph = StateGraph(GatedState, context_schema=GraphContext)
    graph.add_node("tools", secured_tool_node([open_ticket], agent="desk"))

The node runs the tool calls of the last ``AIMessage`` exactly as ``MandateGate`` does for
``create_agent``: grants for user and agent, step-up, consent or approval, write-ahead audit, the
delegated token, one execution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from langchain_core.messages import AnyMessage
from langchain_core.tools import BaseTool
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from typing_extensions import NotRequired, TypedDict

from mandate.auth import PrincipalState
from mandate.contract import write_once
from mandate.sdk.middleware import MandateGate

__all__ = ["GatedState", "secured_tool_node"]


class GatedState(TypedDict):
    """The least state a gated graph needs: its messages and the requester, set once."""

    messages: Annotated[list[AnyMessage], add_messages]
    principal: NotRequired[Annotated[PrincipalState | None, write_once]]


def secured_tool_node(tools: Sequence[BaseTool], *, agent: str, name: str = "tools") -> ToolNode:
    """A ``ToolNode`` over ``tools`` whose calls pass Mandate's gate, acting as ``agent``."""
    return ToolNode(tools, name=name, awrap_tool_call=MandateGate(agent=agent).awrap_tool_call)
