"""Scratch databases, audit events, and tampering the way an attacker with database access would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from mandate._db import Pool
from mandate.audit import AuditEvent, AuditLog
from mandate.runtime.settings import Settings

CHECKPOINT_EVERY = 10
"""A short sealing interval for tests, so a few dozen records cross several checkpoints."""

TAMPER_OPEN = "ALTER TABLE mandate.audit_records DISABLE TRIGGER USER"
TAMPER_CLOSE = "ALTER TABLE mandate.audit_records ENABLE TRIGGER USER"

_FAULT = """
CREATE FUNCTION mandate.test_audit_fault() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit store down (test fault)'; END $$;
CREATE TRIGGER test_audit_fault BEFORE INSERT ON mandate.audit_records FOR EACH ROW
    WHEN (NEW.event = '{event}') EXECUTE FUNCTION mandate.test_audit_fault();
"""
_HEAL = "DROP TRIGGER test_audit_fault ON mandate.audit_records; DROP FUNCTION mandate.test_audit_fault();"

_RECOMPUTE = """
DO $$
DECLARE r mandate.audit_records; prev bytea;
BEGIN
    SELECT hash INTO prev FROM mandate.audit_records WHERE tenant = 'acme' AND seq = {seq} - 1;
    FOR r IN SELECT * FROM mandate.audit_records WHERE tenant = 'acme' AND seq >= {seq} ORDER BY seq LOOP
        r.prev_hash := prev;
        r.hash := mandate.audit_record_hash(r);
        UPDATE mandate.audit_records SET prev_hash = r.prev_hash, hash = r.hash WHERE id = r.id;
        prev := r.hash;
    END LOOP;
END $$
"""


def database_dsn(dsn: str, name: str) -> str:
    """``dsn`` pointed at database ``name`` on the same server."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


@contextmanager
def temporary_database(settings: Settings, *, template: str | None = None) -> Iterator[str]:
    """A new database on the stack's server (a copy of ``template`` if given), dropped on exit."""
    name = f"audit_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create = sql.SQL("{} TEMPLATE {}").format(create, sql.Identifier(template))
    admin = database_dsn(settings.database_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(create)
    try:
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def audit_store_refuses(db: psycopg.Connection, event: str) -> Iterator[None]:
    """Within the block, the audit store fails every write of ``event`` (a fault in the real database)."""
    db.execute(_FAULT.format(event=event))
    try:
        yield
    finally:
        db.execute(_HEAL)


def event(tenant: str = "acme", n: int = 0, **changes: Any) -> AuditEvent:
    """A plausible tool event, numbered ``n`` in its detail."""
    fields: dict[str, Any] = {
        "tenant": tenant,
        "event": "tool.started",
        "actor": "psn_" + "a" * 32,
        "thread_id": "7f1c0c86-0000-4000-8000-000000000001",
        "agent": "agent:executor",
        "tool": "create_ticket",
        "tool_call_id": f"call_{n}",
        "decision": "allowed",
        "detail": {"n": n, "args_hash": "ab" * 16},
    }
    return AuditEvent(**{**fields, **changes})


async def write(log: AuditLog, count: int, *, tenant: str = "acme") -> list[str]:
    """Append ``count`` events for ``tenant``; returns their ids in order."""
    return [await log.record(event(tenant, n)) for n in range(count)]


async def tamper(pool: Pool, *statements: tuple[str, dict[str, Any]]) -> None:
    """Run ``statements`` as a superuser would: with the append-only trigger switched off."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(TAMPER_OPEN)
        for statement, params in statements:
            await conn.execute(statement, params)
        await conn.execute(TAMPER_CLOSE)


def recompute_from(seq: int) -> tuple[str, dict[str, Any]]:
    """The knowledgeable attacker's step: relink acme's chain from ``seq`` on with valid hashes."""
    return _RECOMPUTE.format(seq=int(seq)), {}
