"""The durable audit log: one hash-chained row per security-relevant event, written synchronously.

Every record joins its tenant's chain inside the writing transaction (``mandate.audit_append``
takes a per-tenant advisory lock, links to the head and inserts). Every ``checkpoint_every``-th
record of a tenant is sealed in the same transaction by a signed checkpoint, so a verifier knows
exactly where checkpoints must be and a crash cannot leave a gap. An uncontended record is one
statement committed on its own; concurrent writers of a tenant share one transaction (group
commit). Either way a caller returns only once its own record is committed.

Denials are different: they cost the caller nothing, so one row each would let any member of a
tenant flood its chain. ``record_denial`` writes the first denial of a kind at once and counts
its repeats into one summary record per window (see ``_coalesce``). Allowed actions never take
that path: their write-ahead record is always one row, written before the action runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from opentelemetry import trace
from psycopg import AsyncConnection
from psycopg import Error as PsycopgError
from psycopg.types.json import Jsonb

from mandate._db import Pool
from mandate.audit import queries
from mandate.audit._coalesce import Admission, DenialCoalescer, DenialKind, Summary
from mandate.audit._group_commit import GroupCommit
from mandate.audit.errors import AuditUnavailableError
from mandate.audit.signing import CheckpointSigner

__all__ = [
    "CHECKPOINT_EVERY",
    "COALESCED_ACTOR",
    "COALESCED_EVENT",
    "DENIAL_WINDOW",
    "MAX_DENIAL_KINDS",
    "AppendedRecord",
    "AuditEvent",
    "AuditLog",
    "AuditSink",
]

_log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 100
"""Default sealing interval: a signed checkpoint at every 100th record of a tenant."""
MAX_BATCH = 128
"""Most records one group-commit transaction appends."""
KNOWN_SUBJECTS = 10_000
"""Pseudonyms whose identity a log keeps in memory, to store with their next record."""
DENIAL_WINDOW = timedelta(seconds=60)
"""Default window after the first denial of a kind in which its repeats are counted, not written.

A minute keeps a flood to one summary row per kind per minute, while an auditor still sees the
first attempt at once and the count within about a minute (the sweep writes closed windows)."""
MAX_DENIAL_KINDS = 10_000
"""Default cap on denial kinds counted at once; beyond it a tenant's denials share one window."""
COALESCED_EVENT = "audit.coalesced"
"""Event of the summary of a tenant's shared window (denials of kinds beyond the cap)."""
COALESCED_ACTOR = "mandate:coalesced"
"""Actor of a shared summary: it counts denials of several people, so it names none of them."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


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

    async def record(self, event: AuditEvent) -> str:
        """Write ``event`` durably (write-ahead for an action) and return its record id."""
        ...

    async def record_denial(self, event: AuditEvent) -> str | None:
        """Record a denial, coalescing repeats of its kind; the record id if written now."""
        ...


class AuditLog:
    """The real :class:`AuditSink`: hash-chained rows in ``mandate.audit_records``."""

    def __init__(
        self,
        *,
        pool: Pool,
        signer: CheckpointSigner,
        checkpoint_every: int = CHECKPOINT_EVERY,
        denial_window: timedelta = DENIAL_WINDOW,
        max_denial_kinds: int = MAX_DENIAL_KINDS,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """Write to ``pool``; seal with ``signer`` every ``checkpoint_every`` records per tenant.

        Args:
            pool: The database.
            signer: Signs the checkpoints.
            checkpoint_every: Sealing interval; the verifier must be given the same.
            denial_window: How long repeats of a denial are counted into one summary.
            max_denial_kinds: Most denial kinds counted at once (memory bound).
            clock: The time of denials (timezone-aware); tests fix it.

        Raises:
            ValueError: ``denial_window`` is not positive or ``max_denial_kinds`` is below 1.
        """
        self._pool = pool
        self._signer = signer
        self._every = checkpoint_every
        self._group: GroupCommit[dict[str, Any], AppendedRecord] = GroupCommit(self._commit, max_batch=MAX_BATCH)
        self._subjects: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._denials = DenialCoalescer(window=denial_window, max_kinds=max_denial_kinds)
        self._clock = clock
        self._sweeper: tuple[asyncio.Task[None], asyncio.Event] | None = None

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The key that verifies this log's checkpoints (what a verifier of its chains trusts)."""
        return self._signer.public_key

    @property
    def checkpoint_every(self) -> int:
        """The sealing interval (the verifier must use the same)."""
        return self._every

    @property
    def denial_window(self) -> timedelta:
        """How long repeats of a denial are counted into one summary."""
        return self._denials.window

    @property
    def denial_windows(self) -> int:
        """Denial windows open now: at most ``max_denial_kinds`` kinds plus as many shared tenant windows."""
        return len(self._denials)

    async def record(self, event: AuditEvent) -> str:
        """Write ``event`` durably and return its record id.

        The current span (if any) is stored with the record and gets a ``mandate.audit.record``
        event naming it, so traces and the audit trail point at each other.

        Raises:
            AuditUnavailableError: The row was not written; the caller must not proceed.
        """
        return await self._write(event, traced=True)

    async def record_denial(self, event: AuditEvent) -> str | None:
        """Record the denial ``event`` so that repeating it cannot flood the chain.

        Its kind is (tenant, actor, event, decision, tool, agent). The first denial of a kind is
        written durably before this returns, in full. Repeats within :attr:`denial_window` are
        counted; when the window closes (the background sweep, the kind's next denial, or
        :meth:`close`) the count is written as one record of the same kind, without thread or
        call id, whose ``detail`` holds ``repeated`` (how many), ``first_at`` and ``last_at`` (ISO
        times) and ``window_seconds``. A continuing flood so costs one record per window. When
        :data:`MAX_DENIAL_KINDS` kinds are counted already, a tenant's other denials share one
        window, summarised as :data:`COALESCED_EVENT` with ``detail.events`` (count per event).
        Only for denials: an allowed action keeps its own write-ahead :meth:`record`.

        Returns:
            The id of the record written for ``event``, or ``None`` if it was counted.

        Raises:
            AuditUnavailableError: ``event`` had to be written now and was not.
        """
        kind = DenialKind(
            tenant=event.tenant, event=event.event, actor=event.actor, decision=event.decision, tool=event.tool,
            agent=event.agent,
        )
        admission, summaries = self._denials.admit(kind, self._clock())
        self._start_sweeper()
        await self._write_summaries(summaries)
        if admission is Admission.COUNTED:
            trace.get_current_span().add_event("mandate.audit.coalesced", {"mandate.audit.event": event.event})
            return None
        try:
            return await self.record(event)
        except AuditUnavailableError:
            self._denials.abandon(kind, admission)
            raise

    async def flush_due(self) -> int:
        """Write the summary of every denial window that has closed; the background sweep calls it.

        Returns:
            How many summary records were written (one that fails keeps its count for later).
        """
        return await self._write_summaries(self._denials.due(self._clock()))

    async def close(self) -> None:
        """Stop the sweep and write the summary of every open denial window (shutdown).

        Call it before closing the pool. The log stays usable: a later denial opens a new window.

        Raises:
            AuditUnavailableError: A summary was not written; its count is kept, so closing again retries.
        """
        if self._sweeper is not None:
            task, stop = self._sweeper
            self._sweeper = None
            stop.set()  # lets a flush under way finish: a cancelled write could land and be counted twice
            await task
        summaries = self._denials.drain()
        if await self._write_summaries(summaries) < len(summaries):
            raise AuditUnavailableError("The audit log is unavailable; coalesced denials are still counted.")

    async def append(self, conn: AsyncConnection[Any], event: AuditEvent) -> AppendedRecord:
        """Append ``event`` on ``conn`` inside the caller's open transaction (purge, erasure, and the
        call ledger's decisions: a change and the record that reports it commit together).

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

    async def _write(self, event: AuditEvent, *, traced: bool) -> str:
        try:
            appended = await self._group.submit(event.tenant, self._params(event, traced=traced))
        except (PsycopgError, OSError) as exc:
            raise AuditUnavailableError("The audit log is unavailable.") from exc
        if traced:
            _mark_span(event, appended)
        return appended.id

    async def _write_summaries(self, summaries: list[Summary]) -> int:
        """Write ``summaries``, untraced (each spans many requests); the unwritten are counted again."""
        for written, summary in enumerate(summaries):
            try:
                await self._write(self._summary_event(summary), traced=False)
            except AuditUnavailableError:
                now = self._clock()
                for unwritten in summaries[written:]:
                    self._denials.restore(unwritten, now)
                _log.warning("Coalesced denials not written; their counts are kept for the next try.", exc_info=True)
                return written
        return len(summaries)

    def _summary_event(self, summary: Summary) -> AuditEvent:
        detail: dict[str, Any] = {
            "repeated": summary.repeated,
            "first_at": summary.first_at.isoformat(),
            "last_at": summary.last_at.isoformat(),
            "window_seconds": self._denials.window.total_seconds(),
        }
        if summary.kind is None:
            return AuditEvent(
                tenant=summary.tenant, event=COALESCED_EVENT, actor=COALESCED_ACTOR,
                detail={**detail, "events": summary.events},
            )
        kind = summary.kind
        return AuditEvent(
            tenant=kind.tenant, event=kind.event, actor=kind.actor, agent=kind.agent, tool=kind.tool,
            decision=kind.decision, detail=detail,
        )

    def _start_sweeper(self) -> None:
        """Run the sweep while denial windows are open, so each closes on time even if its kind stops."""
        if not len(self._denials) or (self._sweeper is not None and not self._sweeper[0].done()):
            return
        stop = asyncio.Event()
        # A fresh context: the sweep serves no request, and must not keep one's span alive.
        task = asyncio.get_running_loop().create_task(self._sweep(stop), context=contextvars.Context())
        self._sweeper = (task, stop)

    async def _sweep(self, stop: asyncio.Event) -> None:
        longest = self._denials.window.total_seconds()
        while (closes_at := self._denials.next_close()) is not None:
            delay = min(max((closes_at - self._clock()).total_seconds(), 0.0), longest)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                await self.flush_due()
            else:
                return

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

    def _params(self, event: AuditEvent, *, traced: bool = True) -> dict[str, Any]:
        """The append's parameters, with the current span's ids (captured in the caller's context) if ``traced``."""
        context = trace.get_current_span().get_span_context() if traced else trace.INVALID_SPAN_CONTEXT
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
