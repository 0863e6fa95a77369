"""The consent node: calls that need a person's decision pause the run, one call at a time.

Each pause is a :class:`~mandate.gate.ReviewRequest` (LangChain's human-in-the-loop shape for
exactly one action). Who may decide is checked against the resuming call's verified principal,
and the decision is written to the call ledger for exactly the decided arguments; the executor
trusts only the ledger. One answer is taken per node execution: after it (taken or refused)
the graph loops through step-up back here, in a fresh execution, so an earlier answer is never
replayed against a later caller.

Edits: the requester may edit their own call. An approver's edit inside the tool's ``editable``
policy (``amount`` may only go down) is their approval of the edited call; any other edit by
someone other than the requester goes back to the requester, so two people agree on the same
arguments before anything runs.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from opentelemetry import trace

from mandate.audit import AuditEvent
from mandate.auth import AuthError
from mandate.gate import (
    AnswerRefusal,
    CallRecord,
    answer_of_run,
    ReviewAnswer,
    ReviewRequest,
    decider_refusal,
    is_tenant_approver,
    parse_review_answer,
    party_of,
)
from mandate.contract.state import GraphContext, MandateState, ProposedCall, ReviewError, ToolOutcome
from mandate.nodes._outcomes import as_call, audit_call, call_event, ledger_row, outcome, spec_of
from mandate.nodes.planner import Node
from mandate.tools import ApprovalPolicy, InvalidToolArgsError, ToolSpec, args_hash, edit_within_policy

__all__ = ["SETTLED", "after_consent", "ask_once", "make_consent", "open_decision"]

ALLOWED_DECISIONS = ["approve", "edit", "reject"]
SETTLED = ("approved", "rejected", "expired", "closed")


async def _review_request(ctx: GraphContext, record: CallRecord, spec: ToolSpec, error: ReviewError | None, *, agent: str) -> ReviewRequest:
    confirm = record.needs_requester
    value = ReviewRequest(
        kind="consent" if confirm or spec.approval is ApprovalPolicy.USER_CONSENT else "approval",
        action_requests=[
            {"name": record.tool, "args": record.args, "description": f"Allow {record.tool} with these arguments?"}
        ],
        review_configs=[{"action_name": record.tool, "allowed_decisions": ALLOWED_DECISIONS}],
        approval_id=record.id,
        tool_call_id=record.tool_call_id,
        args_hash=record.args_hash,
        policy=str(spec.approval),
        agent=agent,
        risk=spec.sensitivity,
        expires_at=record.expires_at,
        expires_in=spec.approval_ttl,
        purpose="confirm_edit" if confirm else "decide",
    )
    if confirm and record.edited_from:
        parent = await ctx.ledger.get(record.thread_id, record.tool_call_id, record.edited_from)
        if parent is not None and parent.decided_by is not None:
            value["edited_by"] = ctx.pseudonym(parent.decided_by)
    if error:
        value["error"] = error["code"]
        if error["field"]:
            value["error_field"] = error["field"]
    return value


async def _edit(
    ctx: GraphContext, record: CallRecord, spec: ToolSpec, answer: ReviewAnswer, *, decided: AuditEvent
) -> AnswerRefusal | None:
    """Record an edit: close ``record`` as edited (with its audit record ``decided``) and open the edited call's row."""
    assert answer.args is not None
    try:
        args = spec.validate_args(answer.args)
    except InvalidToolArgsError as exc:
        fields = ",".join(f"decisions[0].edited_action.args.{f}" for f in exc.fields)
        return AnswerRefusal(code="invalid_edit", field=fields or "decisions[0].edited_action.args")
    new_hash = args_hash(record.tool, args)
    decider, now = party_of(ctx.caller), ctx.clock()
    if new_hash == record.args_hash:
        approved = await ctx.ledger.decide(record, status="approved", decider=decider, now=now, comment=answer.message, audit=decided)
        return None if approved else AnswerRefusal(code="approval_expired")
    if not await ctx.ledger.decide(
        record, status="edited", decider=decider, now=now, comment=answer.message, edited_to=new_hash, audit=decided
    ):
        return AnswerRefusal(code="approval_expired")
    by_requester = decider.same_person(record.requester)
    # The requester's own edit of their consent is their decision; their edit of an approver's
    # edit asks the approver again; an approver's edit is theirs only inside the editable policy.
    decided_here = (by_requester and not record.needs_requester and spec.approval is ApprovalPolicy.USER_CONSENT) or (
        not by_requester and edit_within_policy(spec, record.args, args)
    )
    edited = ProposedCall(id=record.tool_call_id, name=record.tool, args=args, args_hash=new_hash)
    child = await ctx.ledger.open(
        edited,
        thread_id=record.thread_id,
        tenant=record.tenant,
        policy=record.policy,
        agent=record.agent,
        requester=record.requester,
        ttl=spec.approval_ttl,
        now=now,
        edited_from=record.args_hash,
        needs_requester=not by_requester and not decided_here,
    )
    if decided_here:
        await ctx.ledger.decide(child, status="approved", decider=decider, now=now, comment=answer.message)
        if record.step_up is not None and not by_requester:
            await ctx.ledger.record_step_up(child, record.step_up)  # a narrowing keeps the requester's step-up
    return None


async def _take(
    ctx: GraphContext, state: MandateState, record: CallRecord, spec: ToolSpec, value: Any, *, agent: str
) -> AnswerRefusal | ReviewAnswer:
    """Validate this run's answer and record it in the ledger with its ``consent.decided`` audit
    record, in one transaction; a refusal says why not."""
    answer = parse_review_answer(value, tool_call_id=record.tool_call_id, args_hash=record.args_hash, tool=record.tool)
    if isinstance(answer, AnswerRefusal):
        return answer
    decider = party_of(ctx.caller)
    same_tenant = ctx.caller.tenant == record.tenant
    is_approver = False
    if spec.approval is ApprovalPolicy.APPROVER and same_tenant and not record.needs_requester:
        try:
            is_approver = await is_tenant_approver(ctx.authz, decider, record.tenant)
        except AuthError as exc:
            return AnswerRefusal(code=exc.code)
    refusal = "not_allowed_to_decide" if not same_tenant else decider_refusal(record, spec, decider=decider, is_approver=is_approver)
    if refusal:
        return AnswerRefusal(code=refusal)
    if ctx.clock() >= record.expires_at:
        return AnswerRefusal(code="approval_expired")
    decided = call_event(
        ctx, state, as_call(record), "consent.decided", answer.type, agent=agent, policy=str(spec.approval),
        comment_given=bool(answer.message), purpose="confirm_edit" if record.needs_requester else "decide",
    )
    if answer.type == "edit":
        return await _edit(ctx, record, spec, answer, decided=decided) or answer
    status = "approved" if answer.type == "approve" else "rejected"
    if not await ctx.ledger.decide(record, status=status, decider=decider, now=ctx.clock(), comment=answer.message, audit=decided):
        return AnswerRefusal(code="approval_expired")
    return answer


async def open_decision(ctx: GraphContext, state: MandateState, proposed: ProposedCall, spec: ToolSpec, *, agent: str) -> CallRecord:
    """The call's ledger row as it stands; a lapsed one is marked expired, a new one is asked (both audited)."""
    record = await ledger_row(ctx, state, proposed, spec, agent=agent)
    if record.status not in SETTLED and ctx.clock() >= record.expires_at:
        expired = call_event(ctx, state, as_call(record), "consent.expired", "expired", agent=agent)
        await ctx.ledger.decide(record, status="expired", decider=None, now=ctx.clock(), audit=expired)
        record = await ledger_row(ctx, state, proposed, spec, agent=agent)
    if record.status not in SETTLED and record.asked_at is None:
        requested = call_event(ctx, state, as_call(record), "consent.requested", "asked", agent=agent, policy=str(spec.approval))
        await ctx.ledger.ask(record, now=ctx.clock(), audit=requested)
    return record


async def ask_once(
    ctx: GraphContext, state: MandateState, record: CallRecord, spec: ToolSpec, error: ReviewError | None, *, agent: str
) -> ReviewError | None:
    """Pause with the review of ``record`` and take one answer delivered by this run.

    Answers replayed from earlier runs were taken by those runs (the ledger holds them) and are
    passed over, so each pause asks again until this run's answer arrives.

    Returns:
        Why the answer was refused (the next pause shows it), or ``None`` when it was taken.
    """
    while True:
        value = interrupt(await _review_request(ctx, record, spec, error, agent=agent))
        fresh, answer = answer_of_run(value, run_id=ctx.run_id)
        if fresh:
            break
    taken = await _take(ctx, state, record, spec, answer, agent=agent)
    if isinstance(taken, AnswerRefusal):
        await audit_call(ctx, state, as_call(record), "consent.refused", taken.code, agent=agent)
        return ReviewError(code=taken.code, field=taken.field)
    span = trace.get_current_span()
    span.set_attribute("mandate.approval.decision", taken.type)
    span.set_attribute("mandate.approval.decider", ctx.pseudonym(ctx.caller))
    span.set_attribute("mandate.approval.policy", str(spec.approval))
    span.set_attribute("gen_ai.tool.call.id", record.tool_call_id)
    return None


def make_consent(*, executor: str) -> Node:
    """The consent node of a graph whose approved calls ``executor`` will make."""

    async def consent(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
        """Ask for the next pending decision; when none is pending, pass the decided calls on."""
        ctx = runtime.context
        settled: list[CallRecord] = []
        for proposed in state.get("proposed", []):
            spec = spec_of(ctx, proposed)
            if spec is None or spec.approval is ApprovalPolicy.NONE:
                continue
            record = await open_decision(ctx, state, proposed, spec, agent=executor)
            if record.status in SETTLED:
                settled.append(record)
                continue
            error = await ask_once(ctx, state, record, spec, state.get("review_error"), agent=executor)
            return {"review_error": error, "gate_pending": True}
        return _settle(state, settled)

    return consent


def _settle(state: MandateState, settled: list[CallRecord]) -> dict[str, Any]:
    """Approved = ungated calls plus the approved calls as decided; the others become outcomes."""
    by_id = {record.tool_call_id: record for record in settled}
    approved: list[ProposedCall] = []
    outcomes: list[ToolOutcome] = list(state.get("outcomes", []))
    for call in state.get("proposed", []):
        record = by_id.get(call["id"])
        if record is None:
            approved.append(call)
        elif record.status == "approved":
            approved.append(as_call(record))
        else:
            code = {"rejected": "rejected", "expired": "approval_expired"}.get(record.status, "closed")
            outcomes.append(outcome(as_call(record), "declined", code))
    return {"approved": approved, "outcomes": outcomes, "gate_pending": False, "review_error": None}


def after_consent(state: MandateState) -> str:
    """Loop through step-up and consent after an answer; otherwise go on to the executor."""
    return "step_up" if state.get("gate_pending") else "tool_executor"
