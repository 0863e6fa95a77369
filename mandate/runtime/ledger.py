"""The call ledger in Postgres (``mandate.tool_calls``): the gate's authority and the approval queue.

Nodes reach it through the :class:`~mandate.gate.CallLedger` protocol; the approval routes use
the queue methods (list what a person may decide, claim one atomically, release it if the run
refused the decision). The queue and the gate read the same rows, so there is nothing to sync.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from psycopg import Error as PsycopgError
from psycopg.types.json import Jsonb

from mandate._db import Pool
from mandate.audit import AuditEvent, AuditLog, AuditUnavailableError
from mandate.auth import Principal
from mandate.gate import CallRecord, ExecutionStart, Party, ProposedCall, StepUpEvidence, decider_refusal, party_of
from mandate.runtime import queries
from mandate.runtime.errors import ApprovalExpiredError, ApprovalNotFoundError, ApprovalNotPendingError
from mandate.tools import ToolError, ToolRegistry

__all__ = ["CallLedgerStore"]

MAX_QUEUE = 500
"""Most pending reviews listed at once (oldest first)."""


def _party(row: dict[str, Any], prefix: str) -> Party | None:
    issuer, subject, user = row[f"{prefix}_issuer"], row[f"{prefix}_subject"], row[f"{prefix}_user"]
    return Party(issuer=issuer, subject=subject, user_id=user) if issuer and subject and user else None


def _record(row: dict[str, Any]) -> CallRecord:
    requester = _party(row, "requester")
    assert requester is not None
    evidence = (
        StepUpEvidence(acr=row["step_up_acr"], auth_time=row["step_up_auth_time"], checked_at=row["step_up_checked_at"])
        if row["step_up_acr"]
        else None
    )
    return CallRecord(
        id=str(row["id"]),
        thread_id=str(row["thread_id"]),
        tool_call_id=row["tool_call_id"],
        args_hash=row["args_hash"],
        tenant=row["tenant"],
        tool=row["tool"],
        args=row["args"],
        policy=row["policy"],
        agent=row["agent"],
        requester=requester,
        status=row["status"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        asked_at=row["asked_at"],
        needs_requester=row["needs_requester"],
        edited_from=row["edited_from"],
        edited_to=row["edited_to"],
        decided_by=_party(row, "decided_by"),
        decided_at=row["decided_at"],
        comment=row["comment"],
        reason=row["reason"],
        step_up=evidence,
        attempts=row["attempts"],
        executed_at=row["executed_at"],
        outcome=row["outcome"],
    )


class CallLedgerStore:
    """The real :class:`~mandate.gate.CallLedger`, and the approval queue over the same rows."""

    def __init__(self, *, pool: Pool, tools: ToolRegistry, audit: AuditLog) -> None:
        self._pool = pool
        self._tools = tools
        self._audit = audit

    async def _one(self, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
        async with self._pool.connection() as conn:
            return await (await conn.execute(sql, params)).fetchone()

    async def open(
        self,
        call: ProposedCall,
        *,
        thread_id: str,
        tenant: str,
        policy: str,
        agent: str,
        requester: Party,
        ttl: int,
        now: float,
        edited_from: str | None = None,
        needs_requester: bool = False,
    ) -> CallRecord:
        """The row of ``call``, opened now (expiring after ``ttl`` seconds) if it does not exist yet."""
        params = {
            "id": uuid.uuid4(),
            "thread_id": uuid.UUID(thread_id),
            "tool_call_id": call["id"],
            "args_hash": call["args_hash"],
            "tenant": tenant,
            "tool": call["name"],
            "args": Jsonb(call["args"]),
            "policy": policy,
            "agent": agent,
            "requester_issuer": requester.issuer,
            "requester_subject": requester.subject,
            "requester_user": requester.user_id,
            "needs_requester": needs_requester,
            "edited_from": edited_from,
            "now": now,
            "ttl": ttl,
        }
        row = await self._one(queries.OPEN_CALL, params) or await self._one(queries.SELECT_CALL, params)
        assert row is not None  # opened above, or by a concurrent writer that committed first
        return _record(row)

    async def current(self, thread_id: str, tool_call_id: str) -> CallRecord | None:
        """The last row of the call's edit chain."""
        row = await self._one(queries.SELECT_CURRENT_CALL, {"thread_id": uuid.UUID(thread_id), "tool_call_id": tool_call_id})
        return _record(row) if row else None

    async def get(self, thread_id: str, tool_call_id: str, args_hash: str) -> CallRecord | None:
        """The row for exactly these arguments."""
        params = {"thread_id": uuid.UUID(thread_id), "tool_call_id": tool_call_id, "args_hash": args_hash}
        row = await self._one(queries.SELECT_CALL, params)
        return _record(row) if row else None

    async def decide(
        self,
        record: CallRecord,
        *,
        status: Literal["approved", "rejected", "edited", "expired"],
        decider: Party | None,
        now: float,
        comment: str | None = None,
        edited_to: str | None = None,
        audit: AuditEvent | None = None,
    ) -> bool:
        """Record a decision on a pending row; ``False`` if it was decided already or expired.

        With ``audit``, the decision and its audit record are written in one transaction: both or
        neither (an auditor never sees a decision the ledger does not hold, nor the reverse).

        Raises:
            AuditUnavailableError: The audit record (so the decision) could not be written.
        """
        params = {
            "id": uuid.UUID(record.id),
            "status": status,
            "issuer": decider.issuer if decider else None,
            "subject": decider.subject if decider else None,
            "user": decider.user_id if decider else None,
            "now": now,
            "comment": comment or None,
            "edited_to": edited_to,
        }
        return await self._change(queries.DECIDE_CALL, params, audit=audit)

    async def ask(self, record: CallRecord, *, now: float, audit: AuditEvent) -> bool:
        """Mark the row as asked: from now on it is in the approval queue; ``False`` if it was already.

        Its audit record ``audit`` is written with it, atomically: both or neither.

        Raises:
            AuditUnavailableError: The audit record (so the change) could not be written.
        """
        return await self._change(queries.MARK_ASKED, {"id": uuid.UUID(record.id), "now": now}, audit=audit)

    async def _change(self, sql: str, params: dict[str, Any], *, audit: AuditEvent | None) -> bool:
        """Run ``sql`` (an UPDATE … RETURNING) and, if it changed a row, append ``audit`` in the same transaction."""
        if audit is None:
            return await self._one(sql, params) is not None
        try:
            async with self._pool.connection() as conn, conn.transaction():
                if await (await conn.execute(sql, params)).fetchone() is None:
                    return False
                await self._audit.append(conn, audit)
        except PsycopgError as exc:
            raise AuditUnavailableError("The audit record could not be written; nothing was changed.") from exc
        return True

    async def record_step_up(self, record: CallRecord, evidence: StepUpEvidence) -> None:
        """Bind step-up evidence to the row's arguments."""
        params = {"id": uuid.UUID(record.id), "acr": evidence.acr, "auth_time": evidence.auth_time, "checked_at": evidence.checked_at}
        async with self._pool.connection() as conn:
            await conn.execute(queries.RECORD_STEP_UP, params)

    async def start_execution(self, record: CallRecord) -> ExecutionStart:
        """Count an attempt; ``done`` once the call has finished (it never runs again)."""
        row = await self._one(queries.START_EXECUTION, {"id": uuid.UUID(record.id)})
        if row is None:
            return "done"
        return "first" if row["attempts"] == 1 else "retry"

    async def finish_execution(self, record: CallRecord, *, outcome: dict[str, Any], now: float) -> None:
        """Record how the call ended."""
        async with self._pool.connection() as conn:
            await conn.execute(queries.FINISH_EXECUTION, {"id": uuid.UUID(record.id), "outcome": Jsonb(outcome), "now": now})

    # The approval queue (HTTP side).

    async def pending_for(self, principal: Principal, *, is_approver: bool) -> list[CallRecord]:
        """The pending, unexpired reviews ``principal`` may decide, oldest first."""
        async with self._pool.connection() as conn:
            await conn.execute(queries.EXPIRE_PENDING_CALLS, {"tenant": principal.tenant})
            rows = await (await conn.execute(queries.LIST_PENDING_REVIEWS, {"tenant": principal.tenant, "limit": MAX_QUEUE})).fetchall()
        decider = party_of(principal)
        return [r for r in map(_record, rows) if self.refusal(r, decider, is_approver=is_approver) is None]

    async def get_in_tenant(self, principal: Principal, approval_id: str) -> CallRecord:
        """One row of the caller's tenant.

        Raises:
            ApprovalNotFoundError: No such row in the caller's tenant.
        """
        try:
            key = uuid.UUID(approval_id)
        except ValueError:
            raise ApprovalNotFoundError("Approval not found.") from None
        row = await self._one(queries.SELECT_CALL_IN_TENANT, {"id": key, "tenant": principal.tenant})
        if row is None:
            raise ApprovalNotFoundError("Approval not found.")
        return _record(row)

    def refusal(self, record: CallRecord, decider: Party, *, is_approver: bool) -> str | None:
        """Why ``decider`` may not decide ``record`` (unknown tools are never decidable)."""
        try:
            spec = self._tools.get(record.tool)
        except ToolError:
            return "unknown_tool"
        return decider_refusal(record, spec, decider=decider, is_approver=is_approver)

    async def claim(self, record: CallRecord, *, now: float) -> None:
        """Take a pending row for one decision; the loser of a race gets :class:`ApprovalNotPendingError`.

        Raises:
            ApprovalExpiredError: The row expired.
            ApprovalNotPendingError: It was decided or closed, or another decision holds it.
        """
        if record.status == "expired" or (record.status == "pending" and record.expires_at <= now):
            raise ApprovalExpiredError("This approval has expired.")
        if record.status != "pending" or await self._one(queries.CLAIM_REVIEW, {"id": uuid.UUID(record.id)}) is None:
            raise ApprovalNotPendingError("This approval was already decided.")

    async def set_reason(self, record: CallRecord, reason: str) -> None:
        """Attach the requester's reason to a pending row.

        Raises:
            ApprovalNotPendingError: It was decided or closed already.
        """
        if await self._one(queries.SET_CALL_REASON, {"id": uuid.UUID(record.id), "reason": reason}) is None:
            raise ApprovalNotPendingError("This approval was already decided.")

    async def release(self, record: CallRecord) -> None:
        """Give a claimed row back to the queue (the run refused the decision or failed)."""
        async with self._pool.connection() as conn:
            await conn.execute(queries.RELEASE_REVIEW, {"id": uuid.UUID(record.id)})

    async def close_open(self, thread_id: str) -> None:
        """Close the thread's undecided rows (its pending question was superseded)."""
        async with self._pool.connection() as conn:
            await conn.execute(queries.CLOSE_OPEN_REVIEWS, {"thread_id": uuid.UUID(thread_id)})
