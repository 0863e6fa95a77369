"""The approval queue: paused gated calls as rows, listed to those who may decide, decided once.

Rows mirror the graph: after every run the pending consent/approval interrupt of a thread becomes
a row (expiring after the tool's ``approval_ttl``), and rows of calls no longer pending close.
A decision claims its row atomically (one of two concurrent deciders wins, the other gets 409),
then resumes the thread with the decider as the run's caller; the consent node checks the
decider again against the verified token, so the queue is a convenience, not the authority.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from langgraph.types import StateSnapshot
from psycopg.types.json import Jsonb

from mandate._db import Pool
from mandate.auth import Authorizer, Principal, Relationship
from mandate.service import queries
from mandate.service.errors import (
    ApprovalExpiredError,
    ApprovalNotFoundError,
    ApprovalNotPendingError,
    NotAllowedToDecideError,
)
from mandate.tools import ToolError, ToolRegistry, ToolSpec, decision_refusal

__all__ = ["GATE_KINDS", "ApprovalQueue", "is_tenant_approver"]

GATE_KINDS = ("consent", "approval")
"""Interrupt kinds that become rows in the queue."""


class ApprovalQueue:
    """Rows of ``mandate.approvals``."""

    def __init__(self, *, pool: Pool, tools: ToolRegistry) -> None:
        self._pool = pool
        self._tools = tools

    async def sync(self, *, thread_id: str, requester: dict[str, Any], snapshot: StateSnapshot) -> None:
        """Make the queue match the thread's pending interrupt after a run."""
        keep: list[str] = []
        async with self._pool.connection() as conn:
            for pending in snapshot.interrupts:
                value = pending.value if isinstance(pending.value, dict) else {}
                if value.get("kind") not in GATE_KINDS:
                    continue
                action = value["action_requests"][0]
                spec = self._tools.get(action["name"])
                keep.append(value["tool_call_id"])
                await conn.execute(
                    queries.INSERT_APPROVAL,
                    {
                        "id": uuid.uuid4(),
                        "thread_id": uuid.UUID(thread_id),
                        "tenant": requester["tenant"],
                        "tool_call_id": value["tool_call_id"],
                        "tool": action["name"],
                        "args": Jsonb(action["args"]),
                        "args_hash": value["args_hash"],
                        "policy": value["policy"],
                        "agent": value["agent"],
                        "requester_issuer": requester["issuer"],
                        "requester_subject": requester["subject"],
                        "ttl": spec.approval_ttl,
                    },
                )
            await conn.execute(queries.CLOSE_OTHER_PENDING_APPROVALS, {"thread_id": uuid.UUID(thread_id), "keep": keep})

    async def pending_for(self, principal: Principal, *, is_tenant_approver: bool) -> list[dict[str, Any]]:
        """The pending, unexpired decisions ``principal`` may make, oldest first."""
        async with self._pool.connection() as conn:
            await conn.execute(queries.EXPIRE_APPROVALS)
            rows = await (await conn.execute(queries.LIST_PENDING_APPROVALS, {"tenant": principal.tenant})).fetchall()
        return [r for r in rows if self._refusal(r, principal, is_tenant_approver=is_tenant_approver) is None]

    async def get(self, principal: Principal, approval_id: str) -> dict[str, Any]:
        """One row of the caller's tenant.

        Raises:
            ApprovalNotFoundError: No such row in the caller's tenant.
        """
        try:
            key = uuid.UUID(approval_id)
        except ValueError:
            raise ApprovalNotFoundError("Approval not found.") from None
        async with self._pool.connection() as conn:
            row = await (await conn.execute(queries.SELECT_APPROVAL_IN_TENANT, {"id": key, "tenant": principal.tenant})).fetchone()
        if row is None:
            raise ApprovalNotFoundError("Approval not found.")
        return row

    def spec_of(self, row: dict[str, Any]) -> ToolSpec:
        """The tool spec of a row."""
        return self._tools.get(row["tool"])

    def check_may_decide(self, row: dict[str, Any], principal: Principal, *, is_tenant_approver: bool) -> None:
        """Raise unless ``principal`` may decide on ``row`` now.

        Raises:
            ApprovalExpiredError: The row expired.
            ApprovalNotPendingError: It was decided or closed already.
            NotAllowedToDecideError: Policy forbids this decider (for example the requester of a payment).
        """
        if row["status"] == "expired" or (row["status"] == "pending" and row["expires_at"] <= datetime.now(UTC)):
            raise ApprovalExpiredError("This approval has expired.")
        if row["status"] != "pending":
            raise ApprovalNotPendingError("This approval was already decided.")
        refusal = self._refusal(row, principal, is_tenant_approver=is_tenant_approver)
        if refusal is not None:
            raise NotAllowedToDecideError(f"You may not decide on this action ({refusal}).")

    async def claim(self, row: dict[str, Any], principal: Principal, decision: str, comment: str) -> None:
        """Take the row for this decision; the loser of a race gets :class:`ApprovalNotPendingError`."""
        params = {
            "id": row["id"],
            "issuer": principal.issuer,
            "subject": principal.subject,
            "decision": decision,
            "comment": comment or None,
        }
        async with self._pool.connection() as conn:
            claimed = await (await conn.execute(queries.CLAIM_APPROVAL, params)).fetchone()
        if claimed is None:
            raise ApprovalNotPendingError("This approval was already decided.")

    async def finish(self, row: dict[str, Any], status: str) -> None:
        """Record the row's final status (``pending`` again if the run refused the decision)."""
        async with self._pool.connection() as conn:
            await conn.execute(queries.FINISH_APPROVAL, {"id": row["id"], "status": status})

    def _refusal(self, row: dict[str, Any], principal: Principal, *, is_tenant_approver: bool) -> str | None:
        try:
            spec = self._tools.get(row["tool"])
        except ToolError:
            return "unknown_tool"
        is_requester = (
            principal.issuer == row["requester_issuer"]
            and principal.subject == row["requester_subject"]
            and principal.tenant == row["tenant"]
        )
        return decision_refusal(spec, is_requester=is_requester, is_tenant_approver=is_tenant_approver)


async def is_tenant_approver(authz: Authorizer, principal: Principal) -> bool:
    """Whether OpenFGA says ``principal`` approves for their own tenant (an error propagates: fail closed)."""
    return await authz.check(Relationship(principal.user_id, "approver", f"tenant:{principal.tenant}"), strong=True)
