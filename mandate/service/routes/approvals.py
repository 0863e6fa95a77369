"""``/approvals``: the human-in-the-loop queue: what the caller may decide, and deciding it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, Field

from mandate.auth import StepUpRequiredError, step_up_satisfied
from mandate.service.approvals import is_tenant_approver
from mandate.service.deps import BearerToken, CurrentPrincipal, Runs, ServicesDep
from mandate.service.errors import DecisionRefusedError
from mandate.service.schemas import RunCommand, RunCreate
from mandate.tools import ApprovalPolicy

__all__ = ["router"]

router = APIRouter(prefix="/approvals", tags=["approvals"])
FINAL_STATUS = {"approve": "approved", "edit": "edited", "reject": "rejected"}


class DecisionCreate(BaseModel):
    """``POST /approvals/{id}/decision``."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["approve", "edit", "reject"]
    args: dict[str, Any] | None = None
    """The edited arguments (``edit`` only); they are validated again by the tool's schema."""
    comment: str = Field(default="", max_length=2000)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return jsonable_encoder(
        {
            "id": str(row["id"]),
            "thread_id": str(row["thread_id"]),
            "action": row["tool"],
            "args": row["args"],
            "args_hash": row["args_hash"],
            "policy": row["policy"],
            "agent": row["agent"],
            "requester": row["requester_subject"],
            "status": row["status"],
            "created_at": row["created_at"],
            "age_seconds": int((datetime.now(UTC) - row["created_at"]).total_seconds()),
            "expires_at": row["expires_at"],
        }
    )


@router.get("")
async def list_approvals(principal: CurrentPrincipal, services: ServicesDep) -> list[dict[str, Any]]:
    """Pending decisions the caller may make: their own consents, and approvals if an approver."""
    approver = await is_tenant_approver(services.authz, principal)
    return [_public(row) for row in await services.approvals.pending_for(principal, is_tenant_approver=approver)]


@router.get("/{approval_id}")
async def get_approval(approval_id: str, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """One approval of the caller's tenant, if they may decide it or asked for it."""
    row = await services.approvals.get(principal, approval_id)
    if not (row["requester_subject"] == principal.subject and row["requester_issuer"] == principal.issuer):
        approver = await is_tenant_approver(services.authz, principal)
        services.approvals.check_may_decide(row, principal, is_tenant_approver=approver)
    return _public(row)


@router.post("/{approval_id}/decision")
async def decide(
    approval_id: str,
    body: DecisionCreate,
    principal: CurrentPrincipal,
    token: BearerToken,
    services: ServicesDep,
    runs: Runs,
) -> dict[str, Any]:
    """Decide once; the thread resumes with the decider as the run's caller."""
    queue = services.approvals
    row = await queue.get(principal, approval_id)
    spec = queue.spec_of(row)
    approver = spec.approval is ApprovalPolicy.APPROVER and await is_tenant_approver(services.authz, principal)
    queue.check_may_decide(row, principal, is_tenant_approver=approver)
    if spec.approval is ApprovalPolicy.APPROVER and spec.step_up and not step_up_satisfied(principal, spec.step_up, now=time.time()):
        raise StepUpRequiredError(
            "Approving this action needs a stronger, more recent sign-in.",
            acr_values=spec.step_up.acr,
            max_age=spec.step_up.max_age,
        )
    await queue.claim(row, principal, body.type, body.comment)
    decision: dict[str, Any] = {"type": body.type, "message": body.comment}
    if body.type == "edit":
        decision["args"] = body.args or {}
    resume = {"decisions": [decision], "tool_call_id": row["tool_call_id"], "args_hash": row["args_hash"]}
    try:
        values = await runs.run_and_wait(
            thread_id=str(row["thread_id"]),
            body=RunCreate(command=RunCommand(resume=resume)),
            caller=principal,
            token=token,
        )
    except BaseException:
        await queue.finish(row, "pending")
        raise
    still_pending = [
        i["value"] for i in values.get("__interrupt__", []) if i["value"].get("tool_call_id") == row["tool_call_id"]
    ]
    if still_pending:
        await queue.finish(row, "pending")
        raise DecisionRefusedError(f"The run refused the decision ({still_pending[0].get('error', 'refused')}).")
    await queue.finish(row, FINAL_STATUS[body.type])
    decided = {**_public(row), "status": FINAL_STATUS[body.type], "decided_by": principal.subject, "comment": body.comment}
    return {"approval": decided, "thread": values}
