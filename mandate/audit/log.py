"""The durable audit log: one hash-chained row per security-relevant event, written synchronously.

Every record joins its tenant's chain inside the writing transaction (``mandate.audit_append``
takes a per-tenant advisory lock, links to the head and inserts). Every ``checkpoint_every``-th
record of a tenant is sealed in the same transaction by a signed checkpoint, so a verifier knows
exactly where checkpoints must be and a crash cannot leave a gap. An uncontended record is one
statement committed on its own; concurrent writers of a tenant share one transaction (group
commit). Either way a caller returns only once its own record is committed.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import trace
from psycopg import AsyncConnection
from psycopg import Error as PsycopgError
from psycopg.types.json import Jsonb

from mandate._db import Pool
from mandate.audit import queries
from mandate.audit._group_commit import GroupCommit
from mandate.audit.errors import AuditUnavailableError
from mandate.audit.signing import CheckpointSigner

__all__ = ["CHECKPOINT_EVERY", "AppendedRecord", "AuditEvent", "AuditLog", "AuditSink"]

CHECKPOINT_EVERY = 100
"""Default sealing interval: a signed checkpoint at every 100th record of a tenant."""
MAX_BATCH = 128
"""Most records one group-commit transaction appends."""
KNOWN_SUBJECTS = 10_000
"""Pseudonyms whose identity a log keeps in memory, to store with their next record."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEvent:
    """What happened, who asked (pseudonymously), which agent acted, under which decision."""

    tenant: str
    event: str
    """``tool.started``, ``tool.succeeded``, ``tool.failed``, ``tool.denied``, ``consent.decided`` …"""
    actor: str
    """Pseudonym of the principal whose call caused the event."""
    thread_id: str | None = None
    agent: str | None = None
    tool: str | None = None
    tool_call_id: str | None = None
    decision: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    """Non-secret facts (argument hashes, codes, downstream ids); never tokens, arguments or document text."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AppendedRecord:
    """Where a record landed in its tenant's chain."""

    id: str
    seq: int
    hash: bytes


class AuditSink(Protocol):
    """Where nodes send audit events."""

    async def record(self, event: AuditEvent) -> str: ...


class AuditLog:
    """The real :class:`AuditSink`: hash-chained rows in ``mandate.audit_records``."""

    def __init__(self, *, pool: Pool, signer: CheckpointSigner, checkpoint_every: int = CHECKPOINT_EVERY) -> None:
        """Write to ``pool``; seal with ``signer`` every ``checkpoint_every`` records per tenant.

        The verifier must be given the same ``checkpoint_every``.
        """
        self._pool = pool
        self._signer = signer
        self._every = checkpoint_every
        self._group: GroupCommit[dict[str, Any], AppendedRecord] = GroupCommit(self._commit, max_batch=MAX_BATCH)
        self._subjects: OrderedDict[str, tuple[str, str]] = OrderedDict()

    @property
    def checkpoint_every(self) -> int:
        """The sealing interval (the verifier must use the same)."""
        return self._every

    async def record(self, event: AuditEvent) -> str:
        """Write ``event`` durably and return its record id.

        The current span (if any) is stored with the record and gets a ``mandate.audit.record``
        event naming it, so traces and the audit trail point at each other.

        Raises:
            AuditUnavailableError: The row was not written; the caller must not proceed.
        """
        try:
            appended = await self._group.submit(event.tenant, self._params(event))
        except (PsycopgError, OSError) as exc:
            raise AuditUnavailableError("The audit log is unavailable.") from exc
        _mark_span(event, appended)
        return appended.id

    async def append(self, conn: AsyncConnection[Any], event: AuditEvent) -> AppendedRecord:
        """Append ``event`` on ``conn`` inside the caller's open transaction (purge, erasure).

        Raises:
            psycopg.Error: The database refused; the caller's transaction must roll back.
        """
        [appended] = await self._append(conn, [self._params(event)])
        _mark_span(event, appended)
        return appended

    async def seal(self, conn: AsyncConnection[Any], *, tenant: str, record: AppendedRecord) -> None:
        """Sign and store a checkpoint of ``tenant``'s chain at ``record`` (idempotent)."""
        checkpoint = self._signer.sign(tenant=tenant, seq=record.seq, chain_hash=record.hash)
        await conn.execute(
            queries.INSERT_CHECKPOINT,
            {
                "tenant": checkpoint.tenant,
                "seq": checkpoint.seq,
                "hash": checkpoint.hash,
                "signed_at": checkpoint.signed_at,
                "key_id": checkpoint.key_id,
                "signature": checkpoint.signature,
            },
        )

    def remember_subject(self, *, pseudonym: str, issuer: str, subject: str) -> None:
        """Know who ``pseudonym`` stands for; it is stored with the next record it acts in.

        Only auditors resolve it (the audit API); an erasure forgets it again.
        """
        self._subjects[pseudonym] = (issuer, subject)
        self._subjects.move_to_end(pseudonym)
        if len(self._subjects) > KNOWN_SUBJECTS:
            self._subjects.popitem(last=False)

    async def _commit(self, batch: list[dict[str, Any]]) -> list[AppendedRecord]:
        """Append ``batch`` (one tenant, in order) durably, sealing where due."""
        async with self._pool.connection() as conn:
            if len(batch) == 1:  # uncontended: one statement, its own transaction, unless a seal is due
                cursor = await conn.execute(queries.APPEND_RECORD, {**batch[0], "unless_due": self._every})
                row = await cursor.fetchone()
                if row is not None and row["seq"] is not None:
                    return [AppendedRecord(id=batch[0]["id"], seq=int(row["seq"]), hash=bytes(row["hash"]))]
            async with conn.transaction():
                return await self._append(conn, batch)

    async def _append(self, conn: AsyncConnection[Any], batch: list[dict[str, Any]]) -> list[AppendedRecord]:
        """Append ``batch`` in the open transaction of ``conn`` and seal where due."""
        cursor = conn.cursor()
        await cursor.executemany(queries.APPEND_RECORD, [{**p, "unless_due": 0} for p in batch], returning=True)
        appended = []
        for params in batch:
            row = await cursor.fetchone()
            assert row is not None
            appended.append(AppendedRecord(id=params["id"], seq=int(row["seq"]), hash=bytes(row["hash"])))
            cursor.nextset()
        for record in appended:
            if record.seq % self._every == 0:
                await self.seal(conn, tenant=batch[0]["tenant"], record=record)
        return appended

    def _params(self, event: AuditEvent) -> dict[str, Any]:
        """The append's parameters, with the current span's ids (captured in the caller's context)."""
        context = trace.get_current_span().get_span_context()
        issuer, subject = self._subjects.get(event.actor, (None, None))
        return {
            "id": str(uuid.uuid4()),
            "tenant": event.tenant,
            "thread_id": event.thread_id,
            "event": event.event,
            "actor": event.actor,
            "actor_issuer": issuer,
            "actor_subject": subject,
            "agent": event.agent,
            "tool": event.tool,
            "tool_call_id": event.tool_call_id,
            "decision": event.decision,
            "detail": Jsonb(event.detail),
            "trace_id": format(context.trace_id, "032x") if context.is_valid else None,
            "span_id": format(context.span_id, "016x") if context.is_valid else None,
        }


def _mark_span(event: AuditEvent, appended: AppendedRecord) -> None:
    trace.get_current_span().add_event(
        "mandate.audit.record",
        {"mandate.audit.record_id": appended.id, "mandate.audit.event": event.event, "mandate.audit.seq": appended.seq},
    )
