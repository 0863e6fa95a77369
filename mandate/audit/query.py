"""Reading the audit trail: filtered pages, a thread's timeline, open tool calls, exports.

Every read is scoped to one tenant. Actors are pseudonyms; the directory of pseudonyms
(``mandate.audit_subjects``) is joined in only where the caller asks for it (the auditor API).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mandate._db import Pool
from mandate.audit import queries

__all__ = ["AuditQuery", "AuditRecord", "export_records", "open_tool_calls", "search_records", "thread_timeline"]

MAX_PAGE = 1000


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditRecord:
    """One row of the audit trail, as read back."""

    id: str
    seq: int
    """Position in the tenant's chain."""
    recorded_at: datetime
    tenant: str
    event: str
    actor: str
    """Pseudonym of the principal whose call caused the event."""
    thread_id: str | None = None
    agent: str | None = None
    tool: str | None = None
    tool_call_id: str | None = None
    decision: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    trace_id: str | None = None
    """The trace that was current when the record was written (W3C hex)."""
    span_id: str | None = None
    hash: bytes = b""
    prev_hash: bytes = b""
    actor_issuer: str | None = None
    """Who ``actor`` stands for, when resolved through the directory (auditor API only)."""
    actor_subject: str | None = None
    open: bool = False
    """A ``tool.started`` with no ``tool.succeeded`` or ``tool.failed`` after it."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AuditRecord:
        """Build from a row of the ``queries`` selects."""
        return cls(
            id=str(row["id"]), seq=int(row["seq"]), recorded_at=row["recorded_at"], tenant=row["tenant"],
            event=row["event"], actor=row["actor"], thread_id=row["thread_id"], agent=row["agent"],
            tool=row["tool"], tool_call_id=row["tool_call_id"], decision=row["decision"], detail=row["detail"],
            trace_id=row["trace_id"], span_id=row["span_id"], hash=bytes(row["hash"]),
            prev_hash=bytes(row["prev_hash"]), actor_issuer=row.get("actor_issuer"),
            actor_subject=row.get("actor_subject"), open=bool(row.get("open", False)),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (actors stay pseudonymous)."""
        body: dict[str, Any] = {
            "id": self.id,
            "tenant": self.tenant,
            "seq": self.seq,
            "recorded_at": self.recorded_at.isoformat(),
            "event": self.event,
            "actor": self.actor,
            "thread_id": self.thread_id,
            "agent": self.agent,
            "tool": self.tool,
            "tool_call_id": self.tool_call_id,
            "decision": self.decision,
            "detail": self.detail,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "prev_hash": self.prev_hash.hex(),
            "hash": self.hash.hex(),
        }
        if self.event == "tool.started":
            body["open"] = self.open
        return body


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditQuery:
    """Filters of one page of a tenant's records, newest first; ``None`` means any."""

    tenant: str
    thread_id: str | None = None
    actor: str | None = None
    """Pseudonym of the principal."""
    agent: str | None = None
    tool: str | None = None
    event: str | None = None
    decision: str | None = None
    since: datetime | None = None
    """Inclusive lower bound on ``recorded_at``."""
    until: datetime | None = None
    """Exclusive upper bound on ``recorded_at``."""
    before_seq: int | None = None
    """Cursor: only records older than this position (the previous page's last ``seq``)."""
    limit: int = 100


async def search_records(pool: Pool, query: AuditQuery) -> list[AuditRecord]:
    """One page of records matching ``query``, newest first, actors resolved."""
    params = {
        "tenant": query.tenant,
        "thread_id": query.thread_id,
        "actor": query.actor,
        "agent": query.agent,
        "tool": query.tool,
        "event": query.event,
        "decision": query.decision,
        "since": query.since,
        "until": query.until,
        "before_seq": query.before_seq,
        "limit": min(max(query.limit, 1), MAX_PAGE),
    }
    async with pool.connection() as conn:
        rows = await (await conn.execute(queries.SEARCH_RECORDS, params)).fetchall()
    return [AuditRecord.from_row(row) for row in rows]


async def thread_timeline(pool: Pool, *, tenant: str, thread_id: str) -> list[AuditRecord]:
    """Who did what on ``thread_id``, in order; open tool calls are flagged."""
    async with pool.connection() as conn:
        cursor = await conn.execute(queries.THREAD_TIMELINE, {"tenant": tenant, "thread_id": thread_id})
        rows = await cursor.fetchall()
    return [AuditRecord.from_row(row) for row in rows]


async def open_tool_calls(pool: Pool, *, tenant: str, started_before: datetime) -> list[AuditRecord]:
    """Tool calls that started before ``started_before`` and never finished (a crash, or one running)."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(queries.OPEN_TOOL_CALLS, {"tenant": tenant, "started_before": started_before})
        ).fetchall()
    return [AuditRecord.from_row(row) for row in rows]


async def export_records(
    pool: Pool, *, tenant: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> AsyncIterator[AuditRecord]:
    """Every record (of ``tenant``, or all), in chain order per tenant, streamed; actors stay pseudonymous."""
    params = {"tenant": tenant, "since": since, "until": until}
    async with pool.connection() as conn, conn.transaction(), conn.cursor(name="mandate_audit_export") as cursor:
        cursor.itersize = 2_000
        await cursor.execute(queries.EXPORT_RECORDS, params)
        async for row in cursor:
            yield AuditRecord.from_row(row)
