"""The step-up node (RFC 9470): a call needing stronger or fresher authentication pauses the run.

The interrupt names the required ``acr_values`` and ``max_age``. The node re-runs from its start
on resume and checks the *resuming call's verified token* (the runtime context), never the
resume payload, so a client cannot claim a stronger login than it has. When the requester's
token is strong and fresh enough, that evidence is bound in the call ledger to the call's exact
arguments; the executor checks it there again before the call runs.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from mandate.auth import StepUpRequirement, acr_at_least, step_up_satisfied
from mandate.gate import StepUpEvidence, StepUpRequest
from mandate.contract.state import GraphContext, MandateState, ProposedCall
from mandate.nodes._outcomes import as_call, audit_call, ledger_row, requester_of, spec_of
from mandate.nodes.planner import Node
from mandate.tools import ToolSpec

__all__ = ["make_step_up", "require_step_up"]

STEP_UP_DESCRIPTION = (
    "{tool} needs a sign-in with your second factor (acr {acr}) made at most {max_age} seconds ago, and the "
    "sign-in this run was made with is weaker or older. Sign in again with your second factor, then resume "
    "this thread with the new token."
)
STEP_UP_DESCRIPTION_OTHER = (
    "{tool} needs the requester's own sign-in with their second factor (acr {acr}) made at most {max_age} "
    "seconds ago; this run was resumed by someone else. The requester signs in again with their second "
    "factor, then resumes this thread with the new token."
)
"""The pause's description when the run's caller is not the requester (for example after an approver's edit)."""


def _fresh(evidence: StepUpEvidence | None, requirement: StepUpRequirement) -> bool:
    return (
        evidence is not None
        and acr_at_least(evidence.acr, requirement.acr)
        and evidence.checked_at - evidence.auth_time <= requirement.max_age
    )


async def require_step_up(ctx: GraphContext, state: MandateState, proposed: ProposedCall, spec: ToolSpec, *, agent: str) -> None:
    """Pause with kind ``step_up`` until the requester's current token meets ``spec``'s requirement,
    then bind that evidence in the ledger to exactly this call's arguments (audited)."""
    if spec.step_up is None:
        return
    requester = requester_of(state)
    record = await ledger_row(ctx, state, proposed, spec, agent=agent)
    if record.status in ("rejected", "expired", "closed") or _fresh(record.step_up, spec.step_up):
        return
    call = as_call(record)
    if not (ctx.caller.same_subject(requester) and step_up_satisfied(ctx.caller, spec.step_up, now=ctx.clock())):
        await audit_call(ctx, state, call, "step_up.required", "asked", agent=agent, acr=spec.step_up.acr)
    # This run's caller cannot change, so a caller who does not satisfy it pauses here for
    # good: on resume interrupt() returns earlier answers and the next interrupt() pauses.
    while not (ctx.caller.same_subject(requester) and step_up_satisfied(ctx.caller, spec.step_up, now=ctx.clock())):
        interrupt(
            StepUpRequest(
                kind="step_up",
                tool=call["name"],
                tool_call_id=call["id"],
                acr_values=spec.step_up.acr,
                max_age=spec.step_up.max_age,
                description=(
                    STEP_UP_DESCRIPTION if ctx.caller.same_subject(requester) else STEP_UP_DESCRIPTION_OTHER
                ).format(tool=call["name"], acr=spec.step_up.acr, max_age=spec.step_up.max_age),
            )
        )
    assert ctx.caller.acr is not None and ctx.caller.auth_time is not None  # step_up_satisfied holds
    await ctx.ledger.record_step_up(
        record, StepUpEvidence(acr=ctx.caller.acr, auth_time=ctx.caller.auth_time, checked_at=ctx.clock())
    )
    await audit_call(ctx, state, call, "step_up.satisfied", "ok", agent=agent, acr=ctx.caller.acr)


def make_step_up(*, executor: str) -> Node:
    """The step-up node of a graph whose calls ``executor`` makes."""

    async def step_up(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
        """Interrupt with kind ``step_up`` until the requester's current token meets each call's requirement."""
        ctx = runtime.context
        for proposed in state.get("proposed", []):
            spec = spec_of(ctx, proposed)
            if spec is not None:
                await require_step_up(ctx, state, proposed, spec, agent=executor)
        return {}

    return step_up
