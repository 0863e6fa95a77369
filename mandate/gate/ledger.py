"""The call ledger: the durable, server-side record of every gated tool call, the gate's authority.

Graph state only routes; what the tool gate believes at the moment of execution comes from here:
which person decided which exact arguments (by args hash) and when, the step-up evidence bound to
those arguments, when the request expires, and whether the call already ran. A client that
rewrites state, continues a thread or replays a resume cannot add a row, so it cannot move a call
past a gate.

One row per (thread, tool call id, args hash). An edit closes its row as ``edited`` and opens a
child row for the edited arguments (``edited_from``), so an edit chain is a list and its last row
is the call as it now stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from typing_extensions import TypedDict

from mandate.audit import AuditEvent

__all__ = [
    "CallLedger",
    "CallRecord",
    "CallStatus",
    "ExecutionStart",
    "Party",
    "ProposedCall",
    "StepUpEvidence",
]

CallStatus = Literal["pending", "deciding", "approved", "rejected", "edited", "expired", "closed"]
"""``pending`` waits for a decision (``deciding`` while the queue resumes the run with one);
``approved`` may run; ``edited`` was replaced by a child row; the others are final."""
ExecutionStart = Literal["first", "retry", "done"]
"""``first`` attempt, a ``retry`` after a crash mid-call (same idempotency key), or ``done`` already."""


class ProposedCall(TypedDict):
    """A tool call as proposed, bound to the hash of its name and arguments."""

    id: str
    name: str
    args: dict[str, Any]
    args_hash: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Party:
    """A person as the ledger names them: issuer, subject and their OpenFGA user id."""

    issuer: str
    subject: str
    user_id: str
    """Issuer-qualified OpenFGA user (``user:<issuer key>|<sub>``)."""

    def same_person(self, other: Party | None) -> bool:
        """Whether ``other`` is this person (same issuer and subject)."""
        return other is not None and (self.issuer, self.subject) == (other.issuer, other.subject)


@dataclass(frozen=True, kw_only=True, slots=True)
class StepUpEvidence:
    """The requester's authentication as it stood when step-up was checked for these arguments."""

    acr: str
    auth_time: int
    """When the requester authenticated (epoch seconds)."""
    checked_at: float
    """When the gate saw it (epoch seconds); freshness is ``checked_at - auth_time``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CallRecord:
    """One row of the ledger."""

    id: str
    """Stable id (the approval id clients use in ``/approvals``)."""
    thread_id: str
    tool_call_id: str
    args_hash: str
    tenant: str
    tool: str
    args: dict[str, Any]
    policy: str
    """The tool's approval policy when the row was opened (``none``, ``user_consent``, ``approver``)."""
    agent: str
    """The agent that will make the call."""
    requester: Party
    status: CallStatus
    created_at: float
    expires_at: float
    """A decision must arrive, and the call must run, before this (epoch seconds)."""
    asked_at: float | None = None
    """When a person was asked to decide (rows opened for step-up alone are not in the queue)."""
    needs_requester: bool = False
    """An edit by someone else: the requester must agree to these arguments."""
    edited_from: str | None = None
    """Args hash of the row this one was edited from."""
    edited_to: str | None = None
    """For an ``edited`` row: the args hash it was edited into."""
    decided_by: Party | None = None
    decided_at: float | None = None
    comment: str | None = None
    reason: str | None = None
    """Why the requester asks (shown to the approver), if they gave one."""
    step_up: StepUpEvidence | None = None
    attempts: int = 0
    """Execution attempts started (more than one only after a crash mid-call)."""
    executed_at: float | None = None
    outcome: dict[str, Any] | None = None
    """Safe facts of the finished call (status, code, downstream id), never a token or argument."""

    @property
    def decided(self) -> bool:
        """Whether a person decided this row (approved, rejected or edited it)."""
        return self.status in ("approved", "rejected", "edited")


class CallLedger(Protocol):
    """What the gate needs from the ledger's store."""

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
        """The row of ``call`` (same args hash), opened now if it does not exist yet."""
        ...

    async def current(self, thread_id: str, tool_call_id: str) -> CallRecord | None:
        """The call as it now stands: the last row of its edit chain, or ``None``."""
        ...

    async def get(self, thread_id: str, tool_call_id: str, args_hash: str) -> CallRecord | None:
        """The row for exactly these arguments, or ``None``."""
        ...

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
        """Record a decision on a pending row; ``False`` if it was decided already or has expired.

        With ``audit``, its audit record is written with it, atomically: both or neither.
        """
        ...

    async def ask(self, record: CallRecord, *, now: float, audit: AuditEvent) -> bool:
        """Mark the row as asked: it enters the approval queue; ``False`` if it was already.

        Its audit record ``audit`` is written with it, atomically: both or neither.
        """
        ...

    async def record_step_up(self, record: CallRecord, evidence: StepUpEvidence) -> None:
        """Bind step-up evidence to the row's arguments."""
        ...

    async def start_execution(self, record: CallRecord) -> ExecutionStart:
        """Count an execution attempt; ``done`` if the call already ran (it must not run again)."""
        ...

    async def finish_execution(self, record: CallRecord, *, outcome: dict[str, Any], now: float) -> None:
        """Record how the call ended; after this it never runs again."""
        ...
