"""What nodes share when they settle a proposed call: the audit row and the reported outcome."""

from __future__ import annotations

from typing import Any

from mandate.audit import AuditEvent
from mandate.graphs.state import GraphContext, MandateState, ProposedCall, ToolOutcome


async def audit_call(
    ctx: GraphContext,
    state: MandateState,
    call: ProposedCall,
    event: str,
    decision: str,
    *,
    agent: str | None,
    **detail: Any,
) -> str:
    """Write one durable audit row about ``call`` by ``agent``; raises ``AuditUnavailableError`` if not written."""
    principal = state["principal"]
    return await ctx.audit.record(
        AuditEvent(
            tenant=principal["tenant"] if principal else ctx.caller.tenant,
            event=event,
            actor=ctx.pseudonym(ctx.caller),
            thread_id=ctx.thread_id,
            agent=agent,
            tool=call["name"],
            tool_call_id=call["id"],
            decision=decision,
            detail={"args_hash": call["args_hash"], **detail},
        )
    )


def outcome(call: ProposedCall, status: str, code: str, detail: dict[str, Any] | None = None) -> ToolOutcome:
    """The reported result of ``call``."""
    return ToolOutcome(call_id=call["id"], name=call["name"], status=status, code=code, detail=detail or {})  # type: ignore[typeddict-item]
