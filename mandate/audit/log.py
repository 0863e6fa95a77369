"""The durable audit log: one row per security-relevant event, written synchronously."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from psycopg import Error as PsycopgError
from psycopg.types.json import Jsonb

from mandate._db import Pool
from mandate.audit import queries
from mandate.audit.errors import AuditUnavailableError

__all__ = ["AuditEvent", "AuditLog", "AuditSink"]


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEvent:
    """What happened, who asked (pseudonymously), which agent acted, under which decision."""

    tenant: str
    event: str
    """``tool.requested``, ``tool.started``, ``tool.succeeded``, ``tool.failed``, ``tool.denied``, ``consent.decided`` …"""
    actor: str
    """Pseudonym of the principal whose call caused the event."""
    thread_id: str | None = None
    agent: str | None = None
    tool: str | None = None
    tool_call_id: str | None = None
    decision: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    """Non-secret facts (argument hashes, codes, downstream ids); never tokens, arguments or document text."""


class AuditSink(Protocol):
    """Where nodes send audit events."""

    async def record(self, event: AuditEvent) -> str: ...


class AuditLog:
    """The real :class:`AuditSink`: rows in ``mandate.audit_records``."""

    def __init__(self, *, pool: Pool) -> None:
        self._pool = pool

    async def record(self, event: AuditEvent) -> str:
        """Write ``event`` durably and return its record id.

        Raises:
            AuditUnavailableError: The row was not written; the caller must not proceed.
        """
        record_id = str(uuid.uuid4())
        params = {
            "id": record_id,
            "tenant": event.tenant,
            "thread_id": event.thread_id,
            "event": event.event,
            "actor": event.actor,
            "agent": event.agent,
            "tool": event.tool,
            "tool_call_id": event.tool_call_id,
            "decision": event.decision,
            "detail": Jsonb(event.detail),
        }
        try:
            async with self._pool.connection() as conn:
                await conn.execute(queries.INSERT_RECORD, params)
        except (PsycopgError, OSError) as exc:
            raise AuditUnavailableError("The audit log is unavailable.") from exc
        return record_id

    async def thread_records(self, thread_id: str) -> list[dict[str, Any]]:
        """The records of one thread, in order."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(queries.SELECT_THREAD_RECORDS, {"thread_id": thread_id})
            return list(await cur.fetchall())
