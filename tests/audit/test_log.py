"""Writing: records carry their trace, concurrent writers share commits, failures fail closed."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate._db import Pool
from mandate.audit import AuditLog, AuditQuery, AuditUnavailableError, build_tracer_provider, search_records
from tests.audit.helpers import event


async def test_record_stores_current_trace_and_marks_the_span(pool: Pool, log: AuditLog) -> None:
    exporter = InMemorySpanExporter()
    tracer = build_tracer_provider(exporter).get_tracer("test")
    with tracer.start_as_current_span("execute_tool create_ticket") as span:
        record_id = await log.record(event())
        context = span.get_span_context()
    [stored] = await search_records(pool, AuditQuery(tenant="acme"))
    assert stored.id == record_id
    assert (stored.trace_id, stored.span_id) == (format(context.trace_id, "032x"), format(context.span_id, "016x"))
    [finished] = exporter.get_finished_spans()
    [marker] = finished.events
    assert marker.name == "mandate.audit.record"
    assert dict(marker.attributes or {}) == {
        "mandate.audit.record_id": record_id, "mandate.audit.event": "tool.started", "mandate.audit.seq": 1,
    }


async def test_record_outside_a_span_stores_no_trace(pool: Pool, log: AuditLog) -> None:
    await log.record(event())
    [stored] = await search_records(pool, AuditQuery(tenant="acme"))
    assert (stored.trace_id, stored.span_id) == (None, None)


async def test_record_fails_closed_for_every_waiter_when_the_store_is_broken(pool: Pool, log: AuditLog) -> None:
    async with pool.connection() as conn:
        await conn.execute("ALTER TABLE mandate.audit_records RENAME TO audit_records_gone")
    results = await asyncio.gather(*(log.record(event(n=n)) for n in range(5)), return_exceptions=True)
    assert all(isinstance(r, AuditUnavailableError) for r in results), results
    async with pool.connection() as conn:
        await conn.execute("ALTER TABLE mandate.audit_records_gone RENAME TO audit_records")
    assert await search_records(pool, AuditQuery(tenant="acme")) == []
    assert await log.record(event())  # recovers once the store is back


async def test_record_after_the_pool_closed_is_unavailable(pool: Pool, log: AuditLog) -> None:
    await pool.close()
    with pytest.raises(AuditUnavailableError):
        await log.record(event())


async def test_remembered_subject_is_stored_with_the_actors_next_record(pool: Pool, log: AuditLog) -> None:
    log.remember_subject(pseudonym="psn_1", issuer="https://a", subject="alice")
    await log.record(event(actor="psn_2"))
    await log.record(event(actor="psn_1"))
    await log.record(event(actor="psn_1"))
    other, first, second = sorted(await search_records(pool, AuditQuery(tenant="acme")), key=lambda r: r.seq)
    assert (other.actor_issuer, other.actor_subject) == (None, None)
    assert {(r.actor_issuer, r.actor_subject) for r in (first, second)} == {("https://a", "alice")}
