"""Queries: filters, pagination, a thread's timeline with open tool calls, exports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mandate._db import Pool
from mandate.audit import (
    AuditLog,
    AuditQuery,
    export_records,
    open_tool_calls,
    search_records,
    thread_timeline,
)
from tests.audit.helpers import event

THREAD = "5d0c4a52-1111-4000-8000-00000000aaaa"
ALICE = "psn_" + "a" * 32
BOB = "psn_" + "b" * 32


async def _thread_story(log: AuditLog) -> None:
    """consent by alice, a started+succeeded ticket, an approval by bob, and a payment left open."""
    await log.record(
        event(event="consent.decided", actor=ALICE, thread_id=THREAD, tool_call_id="c1", decision="approve")
    )
    await log.record(event(event="tool.started", actor=ALICE, thread_id=THREAD, tool_call_id="c1"))
    await log.record(event(event="tool.succeeded", actor=ALICE, thread_id=THREAD, tool_call_id="c1", decision="ok"))
    payment = {"thread_id": THREAD, "tool": "send_payment", "tool_call_id": "c2", "agent": "agent:payments"}
    await log.record(event(event="approval.decided", actor=BOB, decision="approve", **payment))
    await log.record(event(event="tool.started", actor=BOB, **payment))
    await log.record(event(tenant="globex", thread_id=THREAD))


async def test_search_filters_by_each_field_within_the_tenant(pool: Pool, log: AuditLog) -> None:
    log.remember_subject(pseudonym=BOB, issuer="https://issuer.example", subject="bob")
    await _thread_story(log)

    async def events(**filters: object) -> list[tuple[int, str]]:
        return [(r.seq, r.event) for r in await search_records(pool, AuditQuery(tenant="acme", **filters))]

    assert await events() == [(5, "tool.started"), (4, "approval.decided"), (3, "tool.succeeded"),
                              (2, "tool.started"), (1, "consent.decided")]
    assert await events(actor=BOB) == [(5, "tool.started"), (4, "approval.decided")]
    assert await events(agent="agent:payments", event="tool.started") == [(5, "tool.started")]
    assert await events(tool="send_payment", decision="approve") == [(4, "approval.decided")]
    assert await events(thread_id="another") == []
    assert await events(until=datetime.now(UTC) - timedelta(hours=1)) == []
    assert len(await events(since=datetime.now(UTC) - timedelta(hours=1))) == 5
    [resolved] = await search_records(pool, AuditQuery(tenant="acme", event="approval.decided"))
    assert (resolved.actor_issuer, resolved.actor_subject) == ("https://issuer.example", "bob")
    assert "actor_identity" not in resolved.to_json()


async def test_search_pages_with_a_cursor(pool: Pool, log: AuditLog) -> None:
    for n in range(7):
        await log.record(event(n=n))
    first = await search_records(pool, AuditQuery(tenant="acme", limit=3))
    second = await search_records(pool, AuditQuery(tenant="acme", limit=3, before_seq=first[-1].seq))
    last = await search_records(pool, AuditQuery(tenant="acme", limit=3, before_seq=second[-1].seq))
    assert [r.seq for r in first + second + last] == [7, 6, 5, 4, 3, 2, 1]


async def test_timeline_orders_the_thread_and_flags_the_open_call(pool: Pool, log: AuditLog) -> None:
    await _thread_story(log)
    timeline = await thread_timeline(pool, tenant="acme", thread_id=THREAD)
    assert [(r.event, r.actor, r.open) for r in timeline] == [
        ("consent.decided", ALICE, False),
        ("tool.started", ALICE, False),
        ("tool.succeeded", ALICE, False),
        ("approval.decided", BOB, False),
        ("tool.started", BOB, True),
    ]
    assert timeline[-1].to_json()["open"] is True
    assert await thread_timeline(pool, tenant="globex", thread_id="none") == []


async def test_open_tool_calls_lists_starts_without_an_end(pool: Pool, log: AuditLog) -> None:
    await _thread_story(log)
    [still_open] = await open_tool_calls(pool, tenant="acme", started_before=datetime.now(UTC))
    assert (still_open.tool_call_id, still_open.seq) == ("c2", 5)
    assert await open_tool_calls(pool, tenant="acme", started_before=datetime.now(UTC) - timedelta(hours=1)) == []
    await log.record(event(event="tool.failed", thread_id=THREAD, tool="send_payment", tool_call_id="c2"))
    assert await open_tool_calls(pool, tenant="acme", started_before=datetime.now(UTC)) == []


async def test_export_streams_every_tenant_in_chain_order(pool: Pool, log: AuditLog) -> None:
    await _thread_story(log)
    exported = [r async for r in export_records(pool)]
    assert [(r.tenant, r.seq) for r in exported] == [("acme", n) for n in range(1, 6)] + [("globex", 1)]
    assert all(r.actor_subject is None for r in exported)
    only_globex = [r.to_json() async for r in export_records(pool, tenant="globex")]
    assert only_globex[0]["hash"] == exported[-1].hash.hex()
