"""What the gate nodes share: the audit row, the reported outcome, and a call's ledger row."""

from __future__ import annotations

from typing import Any

from mandate.audit import AuditEvent
from mandate.auth import Principal, PrincipalState
from mandate.gate import CallRecord, Party
from mandate.contract.state import GraphContext, MandateState, ProposedCall, ToolOutcome
from mandate.tools import ToolError, ToolSpec


def requester_of(state: MandateState) -> PrincipalState:
    """The thread's requester (set by the first run; every gate node runs after it)."""
    requester = state["principal"]
    assert requester is not None
    return requester


def party(principal: PrincipalState) -> Party:
    """The ledger's name for the requester kept in state."""
    return Party(issuer=principal["issuer"], subject=principal["subject"], user_id=Principal.user_id_of(principal))


def spec_of(ctx: GraphContext, call: ProposedCall) -> ToolSpec | None:
    """The call's tool, or ``None`` for an unknown one (the executor denies it, audited)."""
    try:
        return ctx.tools.get(call["name"])
    except ToolError:
        return None


async def ledger_row(ctx: GraphContext, state: MandateState, call: ProposedCall, spec: ToolSpec, *, agent: str) -> CallRecord:
    """The call as it now stands in the ledger (the last edit), opened on first sight."""
    current = await ctx.ledger.current(ctx.thread_id, call["id"])
    if current is not None:
        return current
    requester = requester_of(state)
    return await ctx.ledger.open(
        call,
        thread_id=ctx.thread_id,
        tenant=requester["tenant"],
        policy=str(spec.approval),
        agent=agent,
        requester=party(requester),
        ttl=spec.approval_ttl,
        now=ctx.clock(),
    )


def as_call(record: CallRecord) -> ProposedCall:
    """The call a ledger row stands for."""
    return ProposedCall(id=record.tool_call_id, name=record.tool, args=record.args, args_hash=record.args_hash)


def call_event(
    ctx: GraphContext, state: MandateState, call: ProposedCall, event: str, decision: str, *, agent: str | None, **detail: Any
) -> AuditEvent:
    """The actor is whoever made this run's call (the requester, an approver resuming, …); the
    requester, on whose behalf everything happens, is always named beside it."""
    requester = requester_of(state)
    return AuditEvent(
        tenant=requester["tenant"],
        event=event,
        actor=ctx.pseudonym(ctx.caller),
        thread_id=ctx.thread_id,
        agent=agent,
        tool=call["name"],
        tool_call_id=call["id"],
        decision=decision,
        detail={"args_hash": call["args_hash"], "requester": ctx.pseudonym(requester), **detail},
    )


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
    """Write one durable audit row about ``call``; raises ``AuditUnavailableError`` if not written."""
    return await ctx.audit.record(call_event(ctx, state, call, event, decision, agent=agent, **detail))


async def audit_denial(
    ctx: GraphContext, state: MandateState, call: ProposedCall, code: str, *, agent: str | None, **detail: Any
) -> None:
    """Record a ``tool.denied`` that any member could repeat at will: the first of its kind at
    once, repeats counted into one summary per window (so a flood cannot swamp the chain)."""
    await ctx.audit.record_denial(call_event(ctx, state, call, "tool.denied", code, agent=agent, **detail))


def outcome(call: ProposedCall, status: str, code: str, detail: dict[str, Any] | None = None) -> ToolOutcome:
    """The reported result of ``call``."""
    return ToolOutcome(call_id=call["id"], name=call["name"], status=status, code=code, detail=detail or {})  # type: ignore[typeddict-item]
