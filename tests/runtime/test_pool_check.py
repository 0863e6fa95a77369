"""The pool's checkout check: no query while the server is silent, a real check once it spoke."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from psycopg import AsyncConnection

from mandate._db import check_if_the_server_spoke
from mandate.runtime.settings import Settings


async def _open(settings: Settings) -> AsyncConnection:  # type: ignore[type-arg]
    return await AsyncConnection.connect(settings.database_url, autocommit=True)


async def test_a_live_idle_connection_passes_without_a_query(stack_settings: Settings) -> None:
    conn = await _open(stack_settings)
    try:
        await conn.execute("SELECT 'the last statement of this test'")
        await check_if_the_server_spoke(conn)
        with psycopg.connect(stack_settings.database_url, autocommit=True) as other:
            row = other.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (conn.info.backend_pid,)).fetchone()
        assert row is not None and "the last statement of this test" in row[0]  # the check sent nothing
    finally:
        await conn.close()


async def test_a_connection_the_server_closed_is_refused(stack_settings: Settings) -> None:
    conn = await _open(stack_settings)
    try:
        with psycopg.connect(stack_settings.database_url, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError):
            for _ in range(50):  # the termination reaches the socket asynchronously
                await check_if_the_server_spoke(conn)
                await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def test_a_closed_connection_is_refused(stack_settings: Settings) -> None:
    conn = await _open(stack_settings)
    await conn.close()
    with pytest.raises(psycopg.OperationalError):
        await check_if_the_server_spoke(conn)
