"""The step-up node (RFC 9470): a call needing stronger or fresher authentication pauses the run.

The interrupt names the required ``acr_values`` and ``max_age``. The node re-runs from its start
on resume and checks the *resuming call's verified token* (the runtime context), never the
resume payload, so a client cannot claim a stronger login than it has.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from mandate.auth import step_up_satisfied
from mandate.graphs.state import GraphContext, MandateState
from mandate.tools import ToolError

__all__ = ["step_up_node"]


async def step_up_node(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """Interrupt with kind ``step_up`` until the requester's current token meets every requirement."""
    ctx = runtime.context
    principal = state["principal"]
    for call in state.get("proposed", []):
        try:
            requirement = ctx.tools.get(call["name"]).step_up
        except ToolError:
            continue  # the executor denies unknown tools, audited
        if requirement is None:
            continue
        caller_is_requester = principal is not None and ctx.caller.same_subject(principal)
        # On resume interrupt() returns the resume value instead of pausing; the loop then
        # re-checks the same (still weak) caller and the next interrupt() pauses again.
        while not (caller_is_requester and step_up_satisfied(ctx.caller, requirement, now=ctx.clock())):
            interrupt(
                {
                    "kind": "step_up",
                    "tool": call["name"],
                    "tool_call_id": call["id"],
                    "acr_values": requirement.acr,
                    "max_age": requirement.max_age,
                    "description": "Sign in again with a second factor, then resume this thread with the new token.",
                }
            )
    return {}
