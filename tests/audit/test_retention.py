"""Retention purges and erasure: both are recorded and signed, and every chain still verifies."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from psycopg.types.json import Jsonb
from typing_extensions import TypedDict

from mandate._db import Pool
from mandate.audit import (
    AuditIntegrityError,
    AuditLog,
    AuditQuery,
    CheckpointSigner,
    Pseudonymizer,
    erase_subject,
    purge_records,
    search_records,
    verify_chains,
)
from mandate.auth import TokenVaultStore
from tests.audit.helpers import CHECKPOINT_EVERY, event, tamper, write

ISSUER = "https://issuer.example"
PSEUDONYMS = Pseudonymizer(b"test-key")
OPERATOR = PSEUDONYMS("urn:mandate:cli", "operator")


class _State(TypedDict):
    notes: list[str]


async def _run_thread(pool: Pool, *, tenant: str, subject: str) -> str:
    """A real thread: its ownership row and LangGraph checkpoints (with blobs and writes)."""
    thread_id = str(uuid.uuid4())
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO mandate.threads (thread_id, tenant, owner_issuer, owner_subject, metadata) "
            "VALUES (%s, %s, %s, %s, %s)",
            (thread_id, tenant, ISSUER, subject, Jsonb({})),
        )
        await conn.execute(  # what a run streamed: its state, messages included
            "INSERT INTO mandate.run_events (run_id, seq, thread_id, event, data) VALUES (%s, 1, %s, 'values', %s)",
            (uuid.uuid4(), thread_id, '{"notes": ["private text"]}'),
        )
    graph = StateGraph(_State)
    graph.add_node("note", lambda state: {"notes": [*state["notes"], "seen"]})
    graph.add_edge(START, "note")
    graph.add_edge("note", END)
    app = graph.compile(checkpointer=AsyncPostgresSaver(pool))  # type: ignore[arg-type]
    await app.ainvoke({"notes": ["private text"]}, {"configurable": {"thread_id": thread_id}})
    return thread_id


async def _held(pool: Pool, thread_id: str) -> dict[str, int]:
    counts = {}
    async with pool.connection() as conn:
        for table, column in (
            ("mandate.threads", "thread_id::text"),
            ("checkpoints", "thread_id"),
            ("checkpoint_blobs", "thread_id"),
            ("checkpoint_writes", "thread_id"),
            ("mandate.token_vault", "thread_id"),
            ("mandate.run_events", "thread_id::text"),
        ):
            cursor = await conn.execute(f"SELECT count(*) AS n FROM {table} WHERE {column} = %s", (thread_id,))
            row = await cursor.fetchone()
            counts[table] = int(row["n"])
    return counts


async def _all_ok(pool: Pool, signer: CheckpointSigner) -> bool:
    reports = await verify_chains(pool, keys=[signer.public_key], checkpoint_every=CHECKPOINT_EVERY)
    return all(r.ok for r in reports) and bool(reports)


async def test_purge_removes_old_prefix_and_chain_still_verifies(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    await write(log, 23)
    cutoff = datetime.now(UTC)
    await write(log, 4)
    [result] = await purge_records(pool, log=log, keys=[signer.public_key], before=cutoff, actor=OPERATOR)
    assert (result.tenant, result.through_seq, result.deleted) == ("acme", 23, 23)
    [report] = await verify_chains(pool, keys=[signer.public_key], checkpoint_every=CHECKPOINT_EVERY)
    assert report.ok, report.problem
    assert (report.first_seq, report.last_seq) == (24, 28)
    [purged] = await search_records(pool, AuditQuery(tenant="acme", event="audit.purged"))
    assert purged.id == result.record_id and purged.actor == OPERATOR
    assert purged.detail["through_seq"] == 23


async def test_purge_then_more_records_and_a_second_purge_verify(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    await write(log, 5)
    await purge_records(pool, log=log, keys=[signer.public_key], before=datetime.now(UTC), actor=OPERATOR)
    await write(log, 30)
    await purge_records(pool, log=log, keys=[signer.public_key], before=datetime.now(UTC), actor=OPERATOR)
    assert await _all_ok(pool, signer)


async def test_purge_refuses_a_broken_chain_and_deletes_nothing(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    ids = await write(log, 8)
    await tamper(pool, ("UPDATE mandate.audit_records SET decision = 'denied' WHERE id = %(id)s", {"id": ids[2]}))
    with pytest.raises(AuditIntegrityError, match="broken at 3"):
        await purge_records(pool, log=log, keys=[signer.public_key], before=datetime.now(UTC), actor=OPERATOR)
    assert len(await search_records(pool, AuditQuery(tenant="acme"))) == 8


async def test_delete_without_a_purge_record_is_still_refused(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    await write(log, 5)
    await purge_records(pool, log=log, keys=[signer.public_key], before=datetime.now(UTC), actor=OPERATOR)
    await write(log, 3)
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute("DELETE FROM mandate.audit_records WHERE tenant = 'acme'")


async def test_purged_prefix_without_its_purge_record_is_detected(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    await write(log, 8)
    await tamper(pool, ("DELETE FROM mandate.audit_records WHERE tenant = 'acme' AND seq <= 3", {}))
    [report] = await verify_chains(pool, keys=[signer.public_key], checkpoint_every=CHECKPOINT_EVERY)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("missing", 1)


async def test_erase_subject_removes_threads_checkpoints_vault_and_identity(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    alice = PSEUDONYMS(ISSUER, "alice")
    mine = await _run_thread(pool, tenant="acme", subject="alice")
    theirs = await _run_thread(pool, tenant="acme", subject="dave")
    vault = TokenVaultStore(pool=pool, secret=b"vault-test-secret")
    for subject, thread_id in (("alice", mine), ("dave", theirs)):
        expires_at = time.time() + 300
        await vault.put(issuer=ISSUER, subject=subject, thread_id=thread_id, token="opaque", expires_at=expires_at)
    log.remember_subject(pseudonym=alice, issuer=ISSUER, subject="alice")
    await log.record(event(actor=alice, thread_id=mine))
    await write(log, 12)
    before = await _held(pool, mine)
    assert all(before.values()), before

    result = await erase_subject(pool, log=log, pseudonym=alice, issuer=ISSUER, subject="alice", actor=OPERATOR)

    assert (result.threads, result.vault_entries, result.tenants) == (1, 1, ("acme",))
    assert result.checkpoint_rows == before["checkpoints"] + before["checkpoint_blobs"] + before["checkpoint_writes"]
    assert set((await _held(pool, mine)).values()) == {0}
    assert all((await _held(pool, theirs)).values())
    records = await search_records(pool, AuditQuery(tenant="acme", actor=alice))
    assert records and all(r.actor_subject is None for r in records)  # no longer resolvable
    [erased] = await search_records(pool, AuditQuery(tenant="acme", event="subject.erased"))
    assert erased.detail == {
        "subject": alice, "threads": 1, "checkpoint_rows": result.checkpoint_rows, "vault_entries": 1,
    }
    assert await _all_ok(pool, signer)
    async with pool.connection() as conn:
        sealed = await (await conn.execute("SELECT 1 FROM mandate.audit_checkpoints WHERE seq = %s", (14,))).fetchone()
    assert sealed is not None  # the erasure record is sealed at once


async def test_erase_subject_tolerates_missing_vault_table(pool: Pool, log: AuditLog, signer: CheckpointSigner) -> None:
    async with pool.connection() as conn:
        await conn.execute("DROP TABLE mandate.token_vault")
    carol = PSEUDONYMS(ISSUER, "carol")
    await _run_thread(pool, tenant="globex", subject="carol")
    result = await erase_subject(pool, log=log, pseudonym=carol, issuer=ISSUER, subject="carol", actor=OPERATOR)
    assert (result.threads, result.vault_entries, result.tenants) == (1, 0, ("globex",))
    assert await _all_ok(pool, signer)


async def test_erase_unknown_subject_records_nothing(pool: Pool, log: AuditLog) -> None:
    nobody = PSEUDONYMS(ISSUER, "nobody")
    result = await erase_subject(pool, log=log, pseudonym=nobody, issuer=ISSUER, subject="nobody", actor=OPERATOR)
    assert (result.threads, result.checkpoint_rows, result.vault_entries, result.tenants) == (0, 0, 0, ())
    assert await search_records(pool, AuditQuery(tenant="acme")) == []

