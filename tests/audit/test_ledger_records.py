"""A ledger change and the audit record that reports it commit together: both or neither, and once.

A replayed decision, a second answer on a decided call, a decision after expiry and a second ask
change nothing, so they write no record; a refused audit write leaves the ledger row unchanged.
"""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from mandate._db import Pool
from mandate.audit import AuditLog, AuditUnavailableError
from mandate.gate import CallRecord, Party, ProposedCall
from mandate.runtime.ledger import CallLedgerStore
from tests.audit.helpers import audit_store_refuses, event
from tests.utils.built_in import built_in_tools

ALICE = Party(issuer="https://idp", subject="alice", user_id="user:dev|alice")
BOB = Party(issuer="https://idp", subject="bob", user_id="user:dev|bob")


async def _records(pool: Pool, thread_id: str, name: str) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute(
            "SELECT count(*) AS n FROM mandate.audit_records WHERE thread_id = %s AND event = %s", (thread_id, name)
        )).fetchone()
    assert row is not None
    return int(row["n"])


async def _open(ledger: CallLedgerStore, *, ttl: int = 3600) -> CallRecord:
    call = ProposedCall(id=f"call_{uuid.uuid4().hex[:8]}", name="create_ticket", args={"title": "t"}, args_hash="ab" * 32)
    return await ledger.open(
        call, thread_id=str(uuid.uuid4()), tenant="acme", policy="user_consent", agent="agent:executor",
        requester=ALICE, ttl=ttl, now=time.time(),
    )


def _ledger(pool: Pool, log: AuditLog) -> CallLedgerStore:
    return CallLedgerStore(pool=pool, tools=built_in_tools(), audit=log)


async def test_a_decision_is_recorded_once_and_a_replayed_or_second_answer_writes_nothing(pool: Pool, log: AuditLog) -> None:
    ledger = _ledger(pool, log)
    record = await _open(ledger)
    decided = event(thread_id=record.thread_id, event="consent.decided", decision="approve")

    assert await ledger.decide(record, status="approved", decider=ALICE, now=time.time(), audit=decided)
    assert not await ledger.decide(record, status="approved", decider=ALICE, now=time.time(), audit=decided)  # replay
    assert not await ledger.decide(record, status="rejected", decider=BOB, now=time.time(), audit=decided)  # another answer
    assert await _records(pool, record.thread_id, "consent.decided") == 1
    current = await ledger.current(record.thread_id, record.tool_call_id)
    assert current is not None and (current.status, current.decided_by) == ("approved", ALICE)


async def test_a_decision_after_expiry_is_neither_recorded_nor_audited(pool: Pool, log: AuditLog) -> None:
    ledger = _ledger(pool, log)
    record = await _open(ledger, ttl=1)
    stale = time.time() + 5
    decided = event(thread_id=record.thread_id, event="consent.decided", decision="approve")
    assert not await ledger.decide(record, status="approved", decider=ALICE, now=stale, audit=decided)
    assert await _records(pool, record.thread_id, "consent.decided") == 0


async def test_a_call_enters_the_queue_once_with_one_record(pool: Pool, log: AuditLog) -> None:
    ledger = _ledger(pool, log)
    record = await _open(ledger)
    requested = event(thread_id=record.thread_id, event="consent.requested", decision="asked")
    assert await ledger.ask(record, now=time.time(), audit=requested)
    assert not await ledger.ask(record, now=time.time(), audit=requested)
    assert await _records(pool, record.thread_id, "consent.requested") == 1


async def test_a_refused_audit_write_leaves_the_call_undecided(pool: Pool, log: AuditLog, database_url: str) -> None:
    ledger = _ledger(pool, log)
    record = await _open(ledger)
    decided = event(thread_id=record.thread_id, event="consent.decided", decision="approve")
    with psycopg.connect(database_url, autocommit=True) as db, audit_store_refuses(db, "consent.decided"):
        with pytest.raises(AuditUnavailableError):
            await ledger.decide(record, status="approved", decider=ALICE, now=time.time(), audit=decided)
    current = await ledger.current(record.thread_id, record.tool_call_id)
    assert current is not None and current.status == "pending" and current.decided_by is None
    assert await ledger.decide(record, status="approved", decider=ALICE, now=time.time(), audit=decided)  # once healed
    assert await _records(pool, record.thread_id, "consent.decided") == 1
