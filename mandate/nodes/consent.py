"""The consent node: calls that need a human decision pause the run, one call at a time.

Each pause is an interrupt in LangChain's human-in-the-loop shape (``action_requests`` and
``review_configs`` for exactly one action). The resume value is
``{"decisions": [{"type": "approve" | "edit" | "reject", "args"?: {...}, "message"?: str}]}``,
optionally with ``tool_call_id`` and ``args_hash``, which must then name the pending call: that
binds a decision to the exact action. Who may decide is checked against the resuming call's
verified principal: the requester for consent; for approval, an OpenFGA approver of the tenant
(other than the requester when the tool says so). A wrong decider or a malformed answer does not
fail the run: it is audited and the graph routes back here to ask again, in a fresh node
execution, so an earlier refused answer is never replayed against a later caller.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from opentelemetry import trace

from mandate.auth import AuthError, Relationship
from mandate.graphs.state import Decision, GraphContext, MandateState, ProposedCall, ToolOutcome
from mandate.nodes._outcomes import audit_call, outcome
from mandate.nodes.planner import Node
from mandate.tools import ApprovalPolicy, ToolError, ToolSpec, args_hash, decision_refusal

__all__ = ["after_consent", "make_consent"]

DECISIONS = ("approve", "edit", "reject")


def _spec(ctx: GraphContext, call: ProposedCall) -> ToolSpec | None:
    try:
        return ctx.tools.get(call["name"])
    except ToolError:
        return None  # the executor denies unknown tools, audited


def _request(call: ProposedCall, spec: ToolSpec, error: str | None, *, agent: str) -> dict[str, Any]:
    value: dict[str, Any] = {
        "kind": "consent" if spec.approval is ApprovalPolicy.USER_CONSENT else "approval",
        "action_requests": [
            {"name": call["name"], "args": call["args"], "description": f"Allow {call['name']} with these arguments?"}
        ],
        "review_configs": [{"action_name": call["name"], "allowed_decisions": list(DECISIONS)}],
        "tool_call_id": call["id"],
        "args_hash": call["args_hash"],
        "policy": str(spec.approval),
        "agent": agent,
        "risk": spec.sensitivity,
        "expires_in": spec.approval_ttl,
    }
    if error:
        value["error"] = error
    return value


async def _refusal(ctx: GraphContext, state: MandateState, call: ProposedCall, spec: ToolSpec, answer: Any) -> str | None:
    """Why this answer from this caller cannot be accepted, or ``None`` if it can."""
    decisions = answer.get("decisions") if isinstance(answer, dict) else None
    if not isinstance(decisions, list) or len(decisions) != 1 or not isinstance(decisions[0], dict):
        return "invalid_decisions"
    if decisions[0].get("type") not in DECISIONS:
        return "unsupported_decision"
    if answer.get("tool_call_id", call["id"]) != call["id"] or answer.get("args_hash", call["args_hash"]) != call["args_hash"]:
        return "stale_decision"
    requester = state["principal"]
    assert requester is not None
    same_tenant = ctx.caller.tenant == requester["tenant"]
    is_approver = False
    if spec.approval is ApprovalPolicy.APPROVER and same_tenant:
        try:
            is_approver = await ctx.authz.check(
                Relationship(ctx.caller.user_id, "approver", f"tenant:{requester['tenant']}"), strong=True
            )
        except AuthError as exc:
            return exc.code
    return decision_refusal(
        spec, is_requester=ctx.caller.same_subject(requester) and same_tenant, is_tenant_approver=is_approver
    )


def _decided_call(call: ProposedCall, spec: ToolSpec, decision: dict[str, Any]) -> ProposedCall | str:
    """The call as decided: edited arguments are re-validated against the tool's schema."""
    if decision["type"] != "edit":
        return call
    try:
        args = spec.validate_args(decision.get("args") or {})
    except ToolError:
        return "invalid_edit"
    return ProposedCall(id=call["id"], name=call["name"], args=args, args_hash=args_hash(call["name"], args))


def make_consent(*, executor: str) -> Node:
    """The consent node of a graph whose approved calls ``executor`` will make."""

    async def consent(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
        """Ask for the next pending decision; when none is pending, pass the approved calls on."""
        ctx = runtime.context
        decided = {d["call"]["id"] for d in state.get("decisions", [])}
        gated = [
            (c, s) for c in state.get("proposed", []) if (s := _spec(ctx, c)) and s.approval is not ApprovalPolicy.NONE
        ]
        pending = [(c, s) for c, s in gated if c["id"] not in decided]
        if not pending:
            return _settle(state)
        call, spec = pending[0]
        answer = interrupt(_request(call, spec, state.get("consent_error"), agent=executor))
        error = await _refusal(ctx, state, call, spec, answer)
        decision = answer["decisions"][0] if error is None else {}
        final = _decided_call(call, spec, decision) if error is None else error
        if isinstance(final, str):
            await audit_call(ctx, state, call, "consent.refused", final, agent=executor)
            return {"consent_error": final, "consent_pending": True}
        await audit_call(
            ctx, state, final, "consent.decided", decision["type"], agent=executor, policy=str(spec.approval),
            comment_given=bool(decision.get("message")), original_args_hash=call["args_hash"],
        )
        span = trace.get_current_span()
        span.set_attribute("mandate.approval.decision", decision["type"])
        span.set_attribute("mandate.approval.decider", ctx.pseudonym(ctx.caller))
        span.set_attribute("mandate.approval.policy", str(spec.approval))
        span.set_attribute("gen_ai.tool.call.id", call["id"])
        record = Decision(call=final, type=decision["type"], decided_by=ctx.pseudonym(ctx.caller))
        return {"decisions": [*state.get("decisions", []), record], "consent_error": None, "consent_pending": True}

    return consent


def _settle(state: MandateState) -> dict[str, Any]:
    """Approved = ungated calls plus approved or edited ones; rejected ones become outcomes."""
    decisions = {d["call"]["id"]: d for d in state.get("decisions", [])}
    approved: list[ProposedCall] = []
    outcomes: list[ToolOutcome] = list(state.get("outcomes", []))
    for call in state.get("proposed", []):
        decision = decisions.get(call["id"])
        if decision is None:
            approved.append(call)
        elif decision["type"] == "reject":
            outcomes.append(outcome(call, "declined", "rejected"))
        else:
            approved.append(decision["call"])
    return {"approved": approved, "outcomes": outcomes, "consent_pending": False, "consent_error": None}


def after_consent(state: MandateState) -> str:
    """Ask again after a decision or refusal; otherwise go on to the executor."""
    return "consent" if state.get("consent_pending") else "tool_executor"
