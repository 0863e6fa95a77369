"""The tool executor: every approved call passes the whole gate, in order, or does not run.

Order (each step fail-closed): registry lookup → arguments bound to the approved hash → the
requester's token (this call's, or the vault's when someone else resumed the run) and its scopes →
OpenFGA (the user may use the tool AND the agent may invoke it) → write-ahead audit record →
token exchange → downstream call with an idempotency key per tool call, so a crash and resume
never doubles an effect.
"""

from __future__ import annotations

import json
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from opentelemetry import trace

from mandate.audit import AuditUnavailableError, redact
from mandate.auth import AuthError, Relationship
from mandate.graphs.state import GraphContext, MandateState, ProposedCall, ToolOutcome
from mandate.nodes._outcomes import audit_call, outcome
from mandate.nodes.planner import Node
from mandate.tools import ToolError, ToolSpec, args_hash, call_downstream

__all__ = ["make_tool_executor"]


class _Refused(Exception):
    """A gate step said no; carries the outcome to report."""

    def __init__(self, status: str, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


async def _requester_token(ctx: GraphContext, state: MandateState) -> str | None:
    """The requester's own token: this call's if they made it, else the vault's (None if expired)."""
    requester = state["principal"]
    assert requester is not None
    if ctx.caller.same_subject(requester) and ctx.subject_token:
        return ctx.subject_token
    return await ctx.vault.get(
        issuer=requester["issuer"], subject=requester["subject"], thread_id=ctx.thread_id, now=ctx.clock()
    )


async def _gate(
    ctx: GraphContext, state: MandateState, call: ProposedCall, token: str, *, agent: str
) -> tuple[ToolSpec, dict[str, Any]]:
    """Registry, arguments, token scopes, OpenFGA: raise :class:`_Refused` on any no."""
    try:
        spec = ctx.tools.get(call["name"])
        args = spec.validate_args(call["args"])
    except ToolError as exc:
        raise _Refused("denied" if exc.code == "unknown_tool" else "failed", exc.code) from exc
    if args_hash(spec.name, args) != call["args_hash"]:
        raise _Refused("denied", "args_changed_after_approval")
    requester = state["principal"]
    assert requester is not None
    try:
        scopes = await _token_scopes(ctx, token)
    except AuthError as exc:
        raise _Refused("denied", exc.code) from exc
    if not set(spec.scopes) <= scopes:
        raise _Refused("denied", "insufficient_scope")
    try:
        user_may, agent_may = await ctx.authz.batch_check(
            [
                Relationship(f"user:{requester['subject']}", spec.relation, spec.resource),
                Relationship(agent, "invoker", spec.resource),
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


async def _execute(ctx: GraphContext, state: MandateState, call: ProposedCall, token: str, *, agent: str) -> ToolOutcome:
    requester = state["principal"]
    assert requester is not None
    try:
        spec, args = await _gate(ctx, state, call, token, agent=agent)
    except _Refused as refusal:
        await audit_call(ctx, state, call, "tool.denied", refusal.code, agent=agent)
        return outcome(call, refusal.status, refusal.code)
    try:
        started = await audit_call(
            ctx, state, call, "tool.started", "allowed", agent=agent, audience=spec.audience, scopes=list(spec.scopes)
        )
    except AuditUnavailableError as exc:
        return outcome(call, "failed", exc.code)  # no durable record, no tool run
    span = trace.get_current_span()
    span.set_attribute("mandate.audit.record_id", started)
    span.set_attribute("mandate.actor_chain", [ctx.brokers[agent].actor, *ctx.caller.actor_chain])
    try:
        delegated = await ctx.brokers[agent].exchange(
            token, issuer=requester["issuer"], subject=requester["subject"], audience=str(spec.audience),
            scopes=spec.scopes,
        )
        result = await call_downstream(
            ctx.downstream, spec, args=args, token=delegated, idempotency_key=f"{ctx.thread_id}:{call['id']}"
        )
    except (AuthError, ToolError) as exc:
        await audit_call(ctx, state, call, "tool.failed", exc.code, agent=agent, started=started)
        return outcome(call, "failed", exc.code)
    safe = {k: v for k, v in result.items() if k in ("id", "status")}
    await audit_call(ctx, state, call, "tool.succeeded", "ok", agent=agent, started=started, **safe)
    return outcome(call, "succeeded", "ok", safe)


async def _token_scopes(ctx: GraphContext, token: str) -> frozenset[str]:
    """Scopes of the requester's token, verified again (a vault token is re-verified, not trusted)."""
    if token is ctx.subject_token:
        return ctx.caller.scopes
    return (await ctx.verifier.verify(token)).scopes


def make_tool_executor(*, agent: str) -> Node:
    """The executor node acting as ``agent``: its OpenFGA grants and its OAuth client (the ``act``)."""

    async def tool_executor(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
        """Run each approved call through the gate; report what became of each."""
        ctx = runtime.context
        approved = state.get("approved", [])
        outcomes = list(state.get("outcomes", []))
        if not approved:
            return {"outcomes": outcomes}
        token = await _requester_token(ctx, state)
        while token is None:
            # The requester's stored token expired during the wait: ask them to sign in and resume.
            interrupt(
                {
                    "kind": "reauthenticate",
                    "tool_call_ids": [c["id"] for c in approved],
                    "description": "Your sign-in expired while this action waited. Sign in again and resume this thread.",
                }
            )
            token = await _requester_token(ctx, state)
        for call in approved:
            with ctx.tracer.start_as_current_span(f"execute_tool {call['name']}") as span:
                span.set_attribute("gen_ai.operation.name", "execute_tool")
                span.set_attribute("gen_ai.agent.id", agent)
                span.set_attribute("gen_ai.tool.name", call["name"])
                span.set_attribute("gen_ai.tool.call.id", call["id"])
                span.set_attribute("gen_ai.conversation.id", ctx.thread_id)
                if ctx.trace_content:
                    span.set_attribute("gen_ai.tool.call.arguments", redact(json.dumps(call["args"], sort_keys=True)))
                result = await _execute(ctx, state, call, token, agent=agent)
                span.set_attribute("mandate.tool.status", result["status"])
                span.set_attribute("mandate.tool.code", result["code"])
            outcomes.append(result)
        return {"outcomes": outcomes, "approved": []}

    return tool_executor
