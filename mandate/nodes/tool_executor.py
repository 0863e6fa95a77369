"""The tool executor: every approved call passes the whole gate, in order, or does not run.

Order (each step fail-closed): registry lookup → argument check against the approved hash →
the requester's own token and scopes → OpenFGA (user may use the tool AND the agent may invoke
it) → write-ahead audit record → token exchange → downstream call with an idempotency key.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from mandate.audit import AuditEvent, AuditUnavailableError
from mandate.auth import AuthError, Relationship
from mandate.graphs.state import GraphContext, MandateState, ProposedCall, ToolOutcome
from mandate.tools import ToolError, ToolSpec, args_hash, call_downstream

__all__ = ["tool_executor_node"]


class _Refused(Exception):
    """A gate step said no; carries the outcome to report."""

    def __init__(self, status: str, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


async def _gate(ctx: GraphContext, state: MandateState, call: ProposedCall) -> tuple[ToolSpec, dict[str, Any]]:
    """Registry, arguments, requester token and scopes, OpenFGA: raise :class:`_Refused` on any no."""
    try:
        spec = ctx.tools.get(call["name"])
        args = spec.validate_args(call["args"])
    except ToolError as exc:
        raise _Refused("denied" if exc.code == "unknown_tool" else "failed", exc.code) from exc
    if args_hash(spec.name, args) != call["args_hash"]:
        raise _Refused("denied", "args_changed_after_approval")
    requester = state["principal"]
    if requester is None or not ctx.caller.same_subject(requester):
        # The delegated token must be exchanged from the requester's own token.
        raise _Refused("denied", "requester_token_unavailable")
    if not set(spec.scopes) <= ctx.caller.scopes:
        raise _Refused("denied", "insufficient_scope")
    try:
        user_may, agent_may = await ctx.authz.batch_check(
            [
                Relationship(ctx.caller.user_id, "can_use", spec.resource),
                Relationship(spec.agent, "invoker", spec.resource),
            ],
            strong=True,
        )
    except AuthError as exc:
        raise _Refused("denied", exc.code) from exc
    if not user_may:
        raise _Refused("denied", "user_not_allowed")
    if not agent_may:
        raise _Refused("denied", "agent_not_allowed")
    return spec, args


async def _execute(ctx: GraphContext, state: MandateState, call: ProposedCall) -> ToolOutcome:
    tenant = state["principal"]["tenant"] if state["principal"] else ""

    async def audit(event: str, decision: str, **detail: Any) -> str:
        return await ctx.audit.record(
            AuditEvent(
                tenant=tenant,
                event=event,
                actor=ctx.pseudonym(ctx.caller),
                thread_id=ctx.thread_id,
                agent=_agent_of(ctx, call["name"]),
                tool=call["name"],
                tool_call_id=call["id"],
                decision=decision,
                detail={"args_hash": call["args_hash"], **detail},
            )
        )

    def outcome(status: str, code: str, detail: dict[str, Any] | None = None) -> ToolOutcome:
        return ToolOutcome(call_id=call["id"], name=call["name"], status=status, code=code, detail=detail or {})  # type: ignore[typeddict-item]

    try:
        spec, args = await _gate(ctx, state, call)
    except _Refused as refusal:
        await audit("tool.denied", refusal.code)
        return outcome(refusal.status, refusal.code)
    try:
        started = await audit("tool.started", "allowed", audience=spec.audience, scopes=list(spec.scopes))
    except AuditUnavailableError as exc:
        return outcome("failed", exc.code)  # no durable record, no tool run
    try:
        token = await ctx.broker.exchange(ctx.subject_token, audience=str(spec.audience), scopes=spec.scopes)
        result = await call_downstream(
            ctx.downstream, spec, args=args, token=token, idempotency_key=f"{ctx.thread_id}:{call['id']}"
        )
    except (AuthError, ToolError) as exc:
        await audit("tool.failed", exc.code, started=started)
        return outcome("failed", exc.code)
    safe = {k: v for k, v in result.items() if k in ("id", "status")}
    await audit("tool.succeeded", "ok", started=started, **safe)
    return outcome("succeeded", "ok", safe)


def _agent_of(ctx: GraphContext, name: str) -> str | None:
    try:
        return ctx.tools.get(name).agent
    except ToolError:
        return None


async def tool_executor_node(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """Run each approved call through the gate; report what became of each."""
    ctx = runtime.context
    outcomes = list(state.get("outcomes", []))
    for call in state.get("approved", []):
        with ctx.tracer.start_as_current_span(f"execute_tool {call['name']}") as span:
            span.set_attribute("gen_ai.operation.name", "execute_tool")
            span.set_attribute("gen_ai.tool.name", call["name"])
            span.set_attribute("gen_ai.tool.call.id", call["id"])
            span.set_attribute("gen_ai.conversation.id", ctx.thread_id)
            result = await _execute(ctx, state, call)
            span.set_attribute("mandate.tool.status", result["status"])
            span.set_attribute("mandate.tool.code", result["code"])
        outcomes.append(result)
    return {"outcomes": outcomes, "approved": []}
