"""The consent node: calls that need a human "yes" pause the run in LangChain's HITL shape.

The interrupt carries ``action_requests`` and ``review_configs``; the resume value is
``{"decisions": [{"type": "approve" | "reject", "message"?: str}, …]}``, one per action, in order.
Each decision is bound to the call's id and the hash of its name and arguments. Who may decide
is checked against the resuming call's verified principal: the requester for consent, an OpenFGA
approver of the tenant other than the requester for approval. A wrong decider or a malformed
answer does not fail the run: it is audited and the graph routes back here to ask again, in a
fresh node execution, so an earlier refused answer is never replayed against a later caller.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from mandate.audit import AuditEvent
from mandate.auth import Relationship
from mandate.graphs.state import GraphContext, MandateState, ProposedCall, ToolOutcome
from mandate.tools import ApprovalPolicy, ToolError

__all__ = ["after_consent", "consent_node"]

DECISIONS = ("approve", "reject")


def _policy(ctx: GraphContext, call: ProposedCall) -> ApprovalPolicy:
    try:
        return ctx.tools.get(call["name"]).approval
    except ToolError:
        return ApprovalPolicy.NONE  # the executor denies unknown tools, audited


def _request(calls: list[ProposedCall], policies: list[ApprovalPolicy], error: str | None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "kind": "consent",
        "action_requests": [
            {"name": c["name"], "args": c["args"], "description": f"Allow {c['name']} with these arguments?"}
            for c in calls
        ],
        "review_configs": [{"action_name": c["name"], "allowed_decisions": list(DECISIONS)} for c in calls],
        "tool_call_ids": [c["id"] for c in calls],
        "args_hashes": [c["args_hash"] for c in calls],
        "policies": [str(p) for p in policies],
    }
    if error:
        value["error"] = error
    return value


async def _refusal(ctx: GraphContext, state: MandateState, answer: Any, policies: list[ApprovalPolicy]) -> str | None:
    """Why this answer from this caller cannot be accepted, or ``None`` if it can."""
    decisions = answer.get("decisions") if isinstance(answer, dict) else None
    if not isinstance(decisions, list) or len(decisions) != len(policies):
        return "invalid_decisions"
    if any(not isinstance(d, dict) or d.get("type") not in DECISIONS for d in decisions):
        return "unsupported_decision"
    requester = state["principal"]
    assert requester is not None
    is_requester = ctx.caller.same_subject(requester) and ctx.caller.tenant == requester["tenant"]
    for policy in policies:
        if policy is ApprovalPolicy.USER_CONSENT and not is_requester:
            return "consent_requires_requester"
        if policy is ApprovalPolicy.APPROVER:
            if is_requester:
                return "requester_cannot_approve"
            allowed = await ctx.authz.check(
                Relationship(ctx.caller.user_id, "approver", f"tenant:{requester['tenant']}"), strong=True
            )
            if not allowed or ctx.caller.tenant != requester["tenant"]:
                return "not_an_approver"
    return None


async def consent_node(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """Ask for decisions on calls that need them; pass the others through."""
    ctx = runtime.context
    proposed = state.get("proposed", [])
    gated = [(c, p) for c in proposed if (p := _policy(ctx, c)) is not ApprovalPolicy.NONE]
    if not gated:
        return {"approved": proposed, "consent_error": None}
    calls = [c for c, _ in gated]
    policies = [p for _, p in gated]
    answer = interrupt(_request(calls, policies, state.get("consent_error")))
    error = await _refusal(ctx, state, answer, policies)
    if error is not None:
        await ctx.audit.record(
            AuditEvent(
                tenant=state["principal"]["tenant"],  # type: ignore[index]
                event="consent.refused",
                actor=ctx.pseudonym(ctx.caller),
                thread_id=ctx.thread_id,
                decision=error,
            )
        )
        return {"consent_error": error}
    approved = [c for c in proposed if _policy(ctx, c) is ApprovalPolicy.NONE]
    outcomes: list[ToolOutcome] = list(state.get("outcomes", []))
    for call, decision in zip(calls, answer["decisions"], strict=True):
        await ctx.audit.record(
            AuditEvent(
                tenant=state["principal"]["tenant"],  # type: ignore[index]
                event="consent.decided",
                actor=ctx.pseudonym(ctx.caller),
                thread_id=ctx.thread_id,
                tool=call["name"],
                tool_call_id=call["id"],
                decision=decision["type"],
                detail={"args_hash": call["args_hash"]},
            )
        )
        if decision["type"] == "approve":
            approved.append(call)
        else:
            outcomes.append(
                ToolOutcome(call_id=call["id"], name=call["name"], status="declined", code="rejected", detail={})
            )
    return {"approved": approved, "outcomes": outcomes, "consent_error": None}


def after_consent(state: MandateState) -> str:
    """Ask again after a refused answer; otherwise go on to the executor."""
    return "consent" if state.get("consent_error") else "tool_executor"
