"""Retention and erasure, each itself a recorded, signed event.

- A **purge** removes a tenant's records older than a cutoff: a prefix of its chain. In one
  transaction it appends an ``audit.purged`` record naming the last removed position and its
  hash (the anchor the verifier restarts from), deletes the prefix (the database allows deleting
  exactly the records such a record covers) and seals the new head with a checkpoint. It refuses
  to run on a chain that does not verify, so a purge never launders tampering.
- An **erasure** deletes a person's threads, their LangGraph checkpoints, their calls in the call
  ledger and their token vault entries, and forgets who their pseudonym stands for. Audit records hold only the pseudonym and
  are kept (they are evidence, kept under a legal obligation until the retention purge), so
  every chain still verifies; a ``subject.erased`` record in each affected tenant says it happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import AsyncConnection

from mandate._db import Pool
from mandate.audit import queries
from mandate.audit.errors import AuditIntegrityError
from mandate.audit.log import AuditEvent, AuditLog
from mandate.audit.verify import verify_chains

__all__ = ["ErasureResult", "PurgeResult", "erase_subject", "purge_records"]


@dataclass(frozen=True, kw_only=True, slots=True)
class PurgeResult:
    """What a purge removed from one tenant's chain."""

    tenant: str
    through_seq: int
    """The last position removed; the chain now starts after it."""
    deleted: int
    record_id: str
    """The ``audit.purged`` record that says so."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ErasureResult:
    """What an erasure removed for one person."""

    pseudonym: str
    threads: int
    checkpoint_rows: int
    """Rows of LangGraph's ``checkpoints``, ``checkpoint_blobs`` and ``checkpoint_writes``."""
    vault_entries: int
    tenants: tuple[str, ...]
    """Tenants whose chain records the erasure (empty when nothing was held)."""


async def purge_records(
    pool: Pool,
    *,
    log: AuditLog,
    keys: Sequence[Ed25519PublicKey],
    before: datetime,
    actor: str,
    tenant: str | None = None,
) -> list[PurgeResult]:
    """Remove records older than ``before`` from the chain of ``tenant`` (or of every tenant).

    Args:
        pool: The database.
        log: The audit log that records the purge and seals the new head.
        keys: Public keys trusted to have signed checkpoints (the chains are verified first).
        before: Records with ``recorded_at`` before this are removed.
        actor: Pseudonym of whoever runs the purge.
        tenant: One tenant, or ``None`` for all.

    Returns:
        One result per tenant that had records to remove.

    Raises:
        AuditIntegrityError: A chain does not verify; nothing was purged.
    """
    reports = await verify_chains(pool, keys=keys, tenant=tenant, checkpoint_every=log.checkpoint_every)
    for report in reports:
        if report.problem is not None:
            raise AuditIntegrityError(
                f"Refusing to purge: the chain of tenant {report.tenant!r} is broken at {report.problem.seq} "
                f"({report.problem.message})."
            )
    results = []
    for report in reports:
        async with pool.connection() as conn, conn.transaction():
            last = await (
                await conn.execute(queries.LAST_RECORD_BEFORE, {"tenant": report.tenant, "before": before})
            ).fetchone()
            if last is None:
                continue
            through_seq = int(last["seq"])
            appended = await log.append(
                conn,
                AuditEvent(
                    tenant=report.tenant, event="audit.purged", actor=actor, decision="retention",
                    detail={"through_seq": through_seq, "through_hash": bytes(last["hash"]).hex(),
                            "before": before.isoformat()},
                ),
            )
            deleted = await conn.execute(
                queries.DELETE_RECORDS_THROUGH, {"tenant": report.tenant, "through_seq": through_seq}
            )
            await log.seal(conn, tenant=report.tenant, record=appended)
        results.append(
            PurgeResult(tenant=report.tenant, through_seq=through_seq, deleted=deleted.rowcount, record_id=appended.id)
        )
    return results


async def erase_subject(
    pool: Pool, *, log: AuditLog, pseudonym: str, issuer: str, subject: str, actor: str
) -> ErasureResult:
    """Erase what Mandate holds about ``subject`` at ``issuer`` (threads with their runs and run events,
    checkpoints, vaulted tokens, ledgered calls, the pseudonym's key), in one transaction, and record it.

    Args:
        pool: The database.
        log: The audit log that records the erasure.
        pseudonym: ``subject``'s pseudonym (the one in audit records and spans).
        issuer: The token issuer that names the person.
        subject: Their ``sub`` at that issuer.
        actor: Pseudonym of whoever runs the erasure.

    Returns:
        What was removed, and where the erasure was recorded.
    """
    async with pool.connection() as conn, conn.transaction():
        present = await (await conn.execute(queries.TABLES_PRESENT)).fetchone()
        assert present is not None
        owner = {"issuer": issuer, "subject": subject}
        threads = await _fetch(conn, queries.SUBJECT_THREADS, owner) if present["threads"] else []
        thread_ids = [row["thread_id"] for row in threads]
        checkpoint_rows = 0
        if present["checkpoints"] and thread_ids:
            for statement in queries.DELETE_THREAD_CHECKPOINTS:
                checkpoint_rows += (await conn.execute(statement, {"thread_ids": thread_ids})).rowcount
        if thread_ids:
            if present["run_events"]:
                await conn.execute(queries.DELETE_RUN_EVENTS, {"thread_ids": thread_ids})
            await conn.execute(queries.DELETE_THREADS, {"thread_ids": thread_ids})
        vault_entries = (await conn.execute(queries.DELETE_VAULT_ENTRIES, owner)).rowcount if present["vault"] else 0
        if present["tool_calls"]:
            await conn.execute(queries.DELETE_TOOL_CALLS, owner)
        await conn.execute(queries.FORGET_SUBJECT, {"pseudonym": pseudonym})
        acted_in = await _fetch(conn, queries.SUBJECT_TENANTS, {"pseudonym": pseudonym})
        tenants = tuple(sorted({row["tenant"] for row in threads} | {row["tenant"] for row in acted_in}))
        detail = {
            "subject": pseudonym, "threads": len(thread_ids), "checkpoint_rows": checkpoint_rows,
            "vault_entries": vault_entries,
        }
        for tenant in tenants:
            appended = await log.append(
                conn, AuditEvent(tenant=tenant, event="subject.erased", actor=actor, decision="erased", detail=detail)
            )
            await log.seal(conn, tenant=tenant, record=appended)
    return ErasureResult(
        pseudonym=pseudonym, threads=len(thread_ids), checkpoint_rows=checkpoint_rows, vault_entries=vault_entries,
        tenants=tenants,
    )


async def _fetch(conn: AsyncConnection[Any], statement: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return list(await (await conn.execute(statement, params)).fetchall())
