"""Denials cannot flood the chain: the first of a kind is written at once, repeats become counted summaries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate._db import Pool
from mandate.audit import (
    COALESCED_ACTOR,
    COALESCED_EVENT,
    AuditEvent,
    AuditLog,
    AuditQuery,
    AuditRecord,
    AuditUnavailableError,
    CheckpointSigner,
    build_tracer_provider,
    search_records,
    verify_chains,
)
from tests.audit.helpers import CHECKPOINT_EVERY, event

WINDOW = timedelta(seconds=60)
START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
ALICE = "psn_" + "a" * 32
BOB = "psn_" + "b" * 32
HIDE_TABLE = "ALTER TABLE mandate.audit_records RENAME TO audit_records_gone"
SHOW_TABLE = "ALTER TABLE mandate.audit_records_gone RENAME TO audit_records"


class Clock:
    """The time the log sees; the test moves it."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture()
def clock() -> Clock:
    """A clock standing at :data:`START` until the test moves it."""
    return Clock()


@pytest.fixture()
async def denials(pool: Pool, signer: CheckpointSigner, clock: Clock) -> AsyncIterator[AuditLog]:
    """The real audit log with a one-minute denial window on the test's clock, closed afterwards."""
    log = AuditLog(pool=pool, signer=signer, checkpoint_every=CHECKPOINT_EVERY, denial_window=WINDOW, clock=clock)
    yield log
    await log.close()


def denied_read(actor: str = ALICE, tenant: str = "acme", **changes: Any) -> AuditEvent:
    """A refused ``GET /audit`` by ``actor``."""
    fields: dict[str, Any] = {"event": "audit.read", "actor": actor, "decision": "denied", "agent": None,
                              "tool": None, "thread_id": None, "tool_call_id": None, "detail": {}}
    return event(tenant, **{**fields, **changes})


async def trail(pool: Pool, tenant: str = "acme", **filters: Any) -> list[AuditRecord]:
    """``tenant``'s records in chain order."""
    return sorted(await search_records(pool, AuditQuery(tenant=tenant, limit=1000, **filters)), key=lambda r: r.seq)


def attempts(records: list[AuditRecord]) -> int:
    """The denials ``records`` stand for: one per record, and a summary for the repeats it counts."""
    return sum(r.detail.get("repeated", 1) for r in records)


async def verified(pool: Pool, signer: CheckpointSigner, tenant: str = "acme") -> bool:
    [report] = await verify_chains(pool, keys=[signer.public_key], tenant=tenant, checkpoint_every=CHECKPOINT_EVERY)
    return report.ok


async def test_record_denial_500_at_once_is_one_record_now_and_one_summary_on_close(
    pool: Pool, signer: CheckpointSigner, denials: AuditLog
) -> None:
    ids = [await denials.record_denial(denied_read(detail={"n": n})) for n in range(500)]
    assert ids[0] is not None and ids[1:] == [None] * 499
    [first] = await trail(pool)
    assert (first.id, first.event, first.actor, first.decision, first.detail) == (
        ids[0], "audit.read", ALICE, "denied", {"n": 0},
    )
    await denials.close()
    assert denials.denial_windows == 0
    still_first, summary = await trail(pool)
    assert still_first == first
    assert (summary.event, summary.actor, summary.decision, summary.tool, summary.thread_id) == (
        "audit.read", ALICE, "denied", None, None,
    )
    assert summary.detail == {
        "repeated": 499, "first_at": START.isoformat(), "last_at": START.isoformat(), "window_seconds": 60.0,
    }
    assert await verified(pool, signer)


async def test_record_denial_flood_costs_one_summary_per_window_and_counts_every_attempt(
    pool: Pool, signer: CheckpointSigner, denials: AuditLog, clock: Clock
) -> None:
    for _ in range(500):  # one denial a second: 500 s, nine windows of 60 s
        await denials.record_denial(denied_read())
        clock.advance(1)
    during = await trail(pool)
    await denials.close()
    first, *summaries = await trail(pool)
    assert "repeated" not in first.detail
    assert [s.detail["repeated"] for s in summaries] == [59, 60, 60, 60, 60, 60, 60, 60, 20]
    assert attempts([first, *summaries]) == 500
    assert len(during) == 9  # each closed window was summarised when the flood's next denial came
    windows = [(datetime.fromisoformat(s.detail["first_at"]), datetime.fromisoformat(s.detail["last_at"]))
               for s in summaries]
    assert windows[0] == (START + timedelta(seconds=1), START + timedelta(seconds=59))
    assert all(last - first <= WINDOW for first, last in windows)
    assert all(earlier[1] < later[0] for earlier, later in pairwise(windows))
    assert await verified(pool, signer)


async def test_record_denial_of_another_person_kind_or_tenant_is_written_at_once_during_a_flood(
    pool: Pool, denials: AuditLog
) -> None:
    for _ in range(100):
        await denials.record_denial(denied_read())
    payment: dict[str, Any] = {"event": "tool.denied", "decision": "agent_not_allowed", "tool": "send_payment"}
    assert await denials.record_denial(denied_read(actor=BOB)) is not None
    assert await denials.record_denial(event(actor=ALICE, **payment)) is not None
    assert await denials.record_denial(event(n=1, actor=ALICE, **payment)) is None  # same kind, another call
    assert await denials.record_denial(event(actor=ALICE, agent="agent:other", **payment)) is not None
    assert await denials.record_denial(denied_read(tenant="globex")) is not None
    acme = await trail(pool)
    assert [(r.event, r.actor, r.agent) for r in acme] == [
        ("audit.read", ALICE, None), ("audit.read", BOB, None),
        ("tool.denied", ALICE, "agent:executor"), ("tool.denied", ALICE, "agent:other"),
    ]
    assert (acme[2].tool_call_id, acme[2].detail) == ("call_0", {"n": 0, "args_hash": "ab" * 16})  # in full
    assert [(r.event, r.actor) for r in await trail(pool, "globex")] == [("audit.read", ALICE)]


async def test_record_never_coalesces_allowed_records_of_a_flooding_kind(pool: Pool, denials: AuditLog) -> None:
    refused: dict[str, Any] = {"event": "tool.denied", "decision": "insufficient_scope"}
    started: list[str] = []
    for n in range(50):
        assert (await denials.record_denial(event(n=n, **refused)) is None) is (n > 0)
        started.append(await denials.record(event(n=n)))  # same tenant, actor, agent and tool, allowed
        assert (await trail(pool, event="tool.started"))[-1].id == started[-1]  # written before it returned
    records = await trail(pool, event="tool.started")
    assert [(r.id, r.tool_call_id, r.decision) for r in records] == [
        (record_id, f"call_{n}", "allowed") for n, record_id in enumerate(started)
    ]
    assert len(await trail(pool, event="tool.denied")) == 1


async def test_record_denial_traces_the_first_and_marks_repeats_but_summaries_carry_no_trace(
    pool: Pool, denials: AuditLog
) -> None:
    exporter = InMemorySpanExporter()
    tracer = build_tracer_provider(exporter).get_tracer("test")
    with tracer.start_as_current_span("GET /audit") as span:
        await denials.record_denial(denied_read())
        await denials.record_denial(denied_read())
        trace_id = format(span.get_span_context().trace_id, "032x")
    await denials.close()
    first, summary = await trail(pool)
    assert (first.trace_id, summary.trace_id, summary.span_id) == (trace_id, None, None)
    [finished] = exporter.get_finished_spans()
    assert [e.name for e in finished.events] == ["mandate.audit.record", "mandate.audit.coalesced"]


async def test_flush_due_writes_closed_windows_and_a_quiet_kind_starts_over(
    pool: Pool, denials: AuditLog, clock: Clock
) -> None:
    for _ in range(10):
        await denials.record_denial(denied_read())
    await denials.record_denial(denied_read(actor=BOB))
    assert await denials.flush_due() == 0
    clock.advance(60)
    assert await denials.flush_due() == 1  # alice's repeats; bob's window had none and just ends
    assert denials.denial_windows == 1  # alice is still watched: her flood may go on
    clock.advance(60)
    assert await denials.flush_due() == 0
    assert denials.denial_windows == 0
    assert await denials.record_denial(denied_read()) is not None  # quiet for a window: a first again
    assert [(r.actor, r.detail.get("repeated")) for r in await trail(pool)] == [
        (ALICE, None), (BOB, None), (ALICE, 9), (ALICE, None),
    ]


async def test_record_denial_window_is_summarised_by_the_background_sweep(
    pool: Pool, signer: CheckpointSigner
) -> None:
    log = AuditLog(pool=pool, signer=signer, checkpoint_every=CHECKPOINT_EVERY,
                   denial_window=timedelta(milliseconds=50))
    try:
        await asyncio.gather(*(log.record_denial(denied_read()) for _ in range(5)))
        for _ in range(600):  # nothing else happens: only the sweep can write the count
            if attempts(records := await trail(pool)) == 5:
                break
            await asyncio.sleep(0.05)
        assert attempts(records) == 5
        assert "repeated" not in records[0].detail and all("repeated" in r.detail for r in records[1:])
    finally:
        await log.close()


async def test_record_denial_beyond_the_cap_shares_a_tenant_window_and_loses_no_count(
    pool: Pool, signer: CheckpointSigner, clock: Clock
) -> None:
    log = AuditLog(pool=pool, signer=signer, checkpoint_every=CHECKPOINT_EVERY, denial_window=WINDOW,
                   max_denial_kinds=5, clock=clock)
    actors = [f"psn_{n:032x}" for n in range(40)]
    try:
        for _ in range(3):
            for actor in actors:
                await log.record_denial(denied_read(actor=actor))
                await log.record_denial(denied_read(actor=actor, tenant="globex"))
                assert log.denial_windows <= 5 + 2  # five kinds, and one shared window per tenant
        assert len(await trail(pool)) == 4  # three tracked kinds and the first of acme's shared window
    finally:
        await log.close()
    for tenant in ("acme", "globex"):
        records = await trail(pool, tenant)
        assert attempts(records) == 3 * len(actors)
        [shared] = [r for r in records if r.event == COALESCED_EVENT]
        assert shared.actor == COALESCED_ACTOR
        assert shared.detail["events"] == {"audit.read": shared.detail["repeated"]}
        assert await verified(pool, signer, tenant)


async def test_record_denial_with_no_room_left_writes_each_denial_on_its_own(
    pool: Pool, signer: CheckpointSigner, clock: Clock
) -> None:
    log = AuditLog(pool=pool, signer=signer, denial_window=WINDOW, max_denial_kinds=1, clock=clock)
    try:
        assert await log.record_denial(denied_read()) is not None  # the one kind tracked
        assert await log.record_denial(denied_read(tenant="globex")) is not None  # globex's shared window
        assert await log.record_denial(denied_read(tenant="globex")) is None
        alone = [await log.record_denial(denied_read(tenant="initech")) for _ in range(3)]
        assert None not in alone  # no room to count them: never dropped, written one by one
        assert log.denial_windows == 2
    finally:
        await log.close()
    assert len(await trail(pool, "initech")) == 3


async def test_record_denial_that_cannot_be_written_fails_closed_and_the_next_is_a_first_again(
    pool: Pool, denials: AuditLog
) -> None:
    async with pool.connection() as conn:
        await conn.execute(HIDE_TABLE)
    with pytest.raises(AuditUnavailableError):
        await denials.record_denial(denied_read())
    async with pool.connection() as conn:
        await conn.execute(SHOW_TABLE)
    assert await denials.record_denial(denied_read()) is not None
    assert len(await trail(pool)) == 1


async def test_summary_that_cannot_be_written_keeps_its_count_until_it_can(
    pool: Pool, signer: CheckpointSigner, denials: AuditLog, clock: Clock
) -> None:
    for _ in range(10):
        await denials.record_denial(denied_read())
    clock.advance(60)
    async with pool.connection() as conn:
        await conn.execute(HIDE_TABLE)
    assert await denials.record_denial(denied_read()) is None  # counted; its window's summary waits
    clock.advance(60)
    assert await denials.flush_due() == 0
    async with pool.connection() as conn:
        await conn.execute(SHOW_TABLE)
    clock.advance(60)
    assert await denials.flush_due() == 1
    first, summary = await trail(pool)
    assert ("repeated" not in first.detail, summary.detail["repeated"]) == (True, 10)
    assert (summary.detail["first_at"], summary.detail["last_at"]) == (
        START.isoformat(), (START + timedelta(seconds=60)).isoformat(),
    )
    assert await verified(pool, signer)


async def test_close_that_cannot_write_keeps_the_counts_for_the_next_close(pool: Pool, denials: AuditLog) -> None:
    for _ in range(3):
        await denials.record_denial(denied_read())
    async with pool.connection() as conn:
        await conn.execute(HIDE_TABLE)
    with pytest.raises(AuditUnavailableError):
        await denials.close()
    async with pool.connection() as conn:
        await conn.execute(SHOW_TABLE)
    await denials.close()
    assert attempts(await trail(pool)) == 3


@pytest.mark.parametrize(("window", "kinds"), [(timedelta(0), 10), (timedelta(seconds=-1), 10), (WINDOW, 0)])
async def test_audit_log_refuses_a_useless_denial_window_or_cap(
    pool: Pool, signer: CheckpointSigner, window: timedelta, kinds: int
) -> None:
    with pytest.raises(ValueError):
        AuditLog(pool=pool, signer=signer, denial_window=window, max_denial_kinds=kinds)
