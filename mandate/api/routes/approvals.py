"""``/approvals``: the human-in-the-loop queue: what the caller may decide, and deciding it.

An approver sees the call (action, arguments, requester, agent, risk, expiry) and, after
deciding, its outcome; never the requester's conversation or retrieved context.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mandate.audit import AuditEvent
from mandate.auth import Principal, StepUpRequiredError, step_up_satisfied
from mandate.gate import CallRecord, interrupt_kind, is_tenant_approver, party_of
from mandate.api.deps import BearerToken, CurrentPrincipal, Runs, ServicesDep
from mandate.runtime.errors import DecisionRefusedError, NotAllowedToDecideError
from mandate.runtime.services import Services
from mandate.api.schemas import RunCommand, RunCreate
from mandate.tools import ApprovalPolicy, ToolError

__all__ = ["ApprovalPublic", "DecisionCreate", "DecisionResult", "decide", "list_approvals", "router"]

router = APIRouter(prefix="/approvals", tags=["approvals"])


class EditedAction(BaseModel):
    """LangChain's human-in-the-loop ``edited_action``: the call as the reviewer wants it."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200)
    args: dict[str, Any]


class DecisionCreate(BaseModel):
    """``POST /approvals/{id}/decision``."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["approve", "edit", "reject"]
    edited_action: EditedAction | None = None
    """The edited call (``edit`` only); its arguments are validated again by the tool's schema."""
    args: dict[str, Any] | None = None
    """Shorthand for ``edited_action.args``."""
    comment: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _edit_has_args(self) -> DecisionCreate:
        if self.type == "edit" and self.edited_action is None and self.args is None:
            raise ValueError("an edit needs edited_action (or args)")
        return self

    def as_resume(self, record: CallRecord) -> dict[str, Any]:
        """The resume value for the paused run, bound to the exact call and arguments."""
        decision: dict[str, Any] = {"type": self.type, "message": self.comment}
        if self.type == "edit":
            args = self.edited_action.args if self.edited_action else self.args
            decision["edited_action"] = {"name": self.edited_action.name if self.edited_action else record.tool, "args": args}
        return {"decisions": [decision], "tool_call_id": record.tool_call_id, "args_hash": record.args_hash}


class ReasonUpdate(BaseModel):
    """``PATCH /approvals/{id}``: the requester says why they ask (shown to the approver as their words)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


class CallOutcome(BaseModel):
    """How the call ended (no arguments, no token, no conversation)."""

    status: str
    code: str
    id: str | None = None
    """The downstream's id of what it created (a ticket, a payment), if any."""


class ApprovalPublic(BaseModel):
    """One call waiting for (or given) a decision, as its reviewer sees it."""

    id: str
    thread_id: str
    action: str
    args: dict[str, Any]
    args_hash: str
    policy: str
    purpose: Literal["decide", "confirm_edit"]
    """``confirm_edit``: someone else edited these arguments; the requester must agree."""
    agent: str
    requester: str
    """The requester's subject at their issuer."""
    risk: str
    reason: str | None
    status: str
    created_at: float
    expires_at: float
    age_seconds: int
    decided_by: str | None = None
    comment: str | None = None
    outcome: CallOutcome | None = None


class DecisionResult(BaseModel):
    """The decision as recorded, and what became of the call."""

    approval: ApprovalPublic
    waiting_for: str | None
    """What the run waits for next (``step_up``, ``consent`` to confirm an edit, ``reauthenticate``), if anything."""


def public(services: Services, record: CallRecord, *, outcome: dict[str, Any] | None = None) -> ApprovalPublic:
    """The reviewer's view of ``record``."""
    try:
        risk = services.tools.get(record.tool).sensitivity
    except ToolError:  # a tool removed from the registry still lists, as of unknown risk
        risk = "unknown"
    return ApprovalPublic(
        id=record.id,
        thread_id=record.thread_id,
        action=record.tool,
        args=record.args,
        args_hash=record.args_hash,
        policy=record.policy,
        purpose="confirm_edit" if record.needs_requester else "decide",
        agent=record.agent,
        requester=record.requester.subject,
        risk=risk,
        reason=record.reason,
        status=record.status,
        created_at=record.created_at,
        expires_at=record.expires_at,
        age_seconds=max(0, int(time.time() - record.created_at)),
        decided_by=record.decided_by.subject if record.decided_by else None,
        comment=record.comment,
        outcome=CallOutcome(**{k: outcome.get(k) for k in ("status", "code", "id")}) if outcome else None,
    )


async def _is_approver(services: Services, principal: Principal) -> bool:
    return await is_tenant_approver(services.authz, party_of(principal), principal.tenant)


@router.get("")
async def list_approvals(principal: CurrentPrincipal, services: ServicesDep) -> list[ApprovalPublic]:
    """Pending decisions the caller may make: their own consents, and approvals if an approver."""
    approver = await _is_approver(services, principal)
    return [public(services, r) for r in await services.ledger.pending_for(principal, is_approver=approver)]


@router.get("/{approval_id}")
async def get_approval(approval_id: str, principal: CurrentPrincipal, services: ServicesDep) -> ApprovalPublic:
    """One call of the caller's tenant, if they asked for it or may decide it."""
    record = await services.ledger.get_in_tenant(principal, approval_id)
    if not party_of(principal).same_person(record.requester):
        refusal = services.ledger.refusal(record, party_of(principal), is_approver=await _is_approver(services, principal))
        if refusal:
            raise NotAllowedToDecideError(f"You may not see this action ({refusal}).")
    current = await services.ledger.current(record.thread_id, record.tool_call_id)
    return public(services, record, outcome=current.outcome if current else None)


@router.patch("/{approval_id}")
async def give_reason(approval_id: str, body: ReasonUpdate, principal: CurrentPrincipal, services: ServicesDep) -> ApprovalPublic:
    """The requester attaches a reason to their own pending request; it changes nothing that is decided."""
    record = await services.ledger.get_in_tenant(principal, approval_id)
    if not party_of(principal).same_person(record.requester):
        raise NotAllowedToDecideError("Only the requester may give the reason for a request.")
    await services.ledger.set_reason(record, body.reason)
    await services.audit.record(
        AuditEvent(
            tenant=record.tenant, event="consent.reason_given", actor=services.pseudonymize(principal.issuer, principal.subject),
            thread_id=record.thread_id, agent=record.agent, tool=record.tool, tool_call_id=record.tool_call_id,
            decision="given", detail={"args_hash": record.args_hash, "length": len(body.reason)},
        )
    )
    updated = await services.ledger.get(record.thread_id, record.tool_call_id, record.args_hash)
    assert updated is not None
    return public(services, updated)


async def decide(
    approval_id: str, body: DecisionCreate, *, principal: Principal, token: str, services: Services, runs: Any
) -> DecisionResult:
    """Decide once; the thread resumes with the decider as the run's caller (the API and the page).

    Raises:
        AppError: A subclass, mapped to HTTP by ``service.errors``.
    """
    ledger = services.ledger
    record = await ledger.get_in_tenant(principal, approval_id)
    spec = services.tools.get(record.tool)
    approver = spec.approval is ApprovalPolicy.APPROVER and await _is_approver(services, principal)
    refusal = ledger.refusal(record, party_of(principal), is_approver=approver)
    if refusal:
        raise NotAllowedToDecideError(f"You may not decide on this action ({refusal}).")
    as_approver = spec.approval is ApprovalPolicy.APPROVER and not record.needs_requester
    if as_approver and body.type != "reject" and spec.step_up and not step_up_satisfied(principal, spec.step_up, now=time.time()):
        raise StepUpRequiredError(
            "Approving this action needs a stronger, more recent sign-in.",
            acr_values=spec.step_up.acr,
            max_age=spec.step_up.max_age,
        )
    await ledger.claim(record, now=time.time())
    try:
        values = await runs.run_and_wait(
            thread_id=record.thread_id,
            body=RunCreate(command=RunCommand(resume=body.as_resume(record))),
            caller=principal,
            token=token,
        )
    except BaseException:
        await ledger.release(record)
        raise
    decided = await ledger.get(record.thread_id, record.tool_call_id, record.args_hash)
    if decided is None or decided.status == "deciding":
        await ledger.release(record)
        refused = [i["value"] for i in values.get("__interrupt__", []) if i["value"].get("approval_id") == record.id]
        raise DecisionRefusedError(f"The run refused the decision ({refused[0].get('error', 'refused') if refused else 'refused'}).")
    current = await ledger.current(record.thread_id, record.tool_call_id)
    waiting = [interrupt_kind(i["value"]) for i in values.get("__interrupt__", [])]
    return DecisionResult(
        approval=public(services, decided, outcome=current.outcome if current else None),
        waiting_for=next((w for w in waiting if w), None),
    )


@router.post("/{approval_id}/decision")
async def post_decision(
    approval_id: str, body: DecisionCreate, principal: CurrentPrincipal, token: BearerToken, services: ServicesDep, runs: Runs
) -> DecisionResult:
    """Decide once; the thread resumes with the decider as the run's caller."""
    return await decide(approval_id, body, principal=principal, token=token, services=services, runs=runs)
