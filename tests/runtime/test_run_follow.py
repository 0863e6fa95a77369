"""Following a run's event log when its wake-ups are lost (a LISTEN connection that dropped them):
the follower still gets every event once and in order, ending with the run's own end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from mandate.audit import build_tracer_provider
from mandate.runtime.run_events import RunEventLog, RunNotifications, StoredEvent
from mandate.runtime.runs import RunManager
from mandate.runtime.services import open_services
from mandate.runtime.settings import Settings
from mandate.runtime.webhooks import WebhookSender
from tests.utils.runs import insert_running_run

EVENT = "INSERT INTO mandate.run_events (run_id, seq, thread_id, event, data) VALUES (%s, %s, %s, %s, %s)"
"""A row of the log written without NOTIFY: nothing wakes the follower."""


async def test_a_follower_without_wakeups_gets_every_event_before_the_end(stack_settings: Settings) -> None:
    async with open_services(stack_settings, tracer_provider=build_tracer_provider()) as services:
        deaf = RunNotifications(stack_settings.database_url)  # never started: no wake-up reaches it
        events = RunEventLog(pool=services.pool, notifications=deaf)
        webhooks = WebhookSender(http=services.http, secret=b"unused", allowed_origins=[])
        runs = RunManager(services, events=events, webhooks=webhooks)
        thread, run = await insert_running_run(services.pool, queue="test-follow")
        async with services.pool.connection() as conn:
            for seq in (1, 2):
                await conn.execute(EVENT, (run, seq, thread, "values", json.dumps({"seq": seq})))

        follower = asyncio.create_task(_collect(runs.stream({"thread_id": str(thread), "run_id": str(run)}, after=2)))
        await asyncio.sleep(0.3)  # the follower read the log (nothing after 2) and waits for a wake-up
        async with services.pool.connection() as conn:
            for seq in range(3, 8):
                await conn.execute(EVENT, (run, seq, thread, "values", json.dumps({"seq": seq})))
            await conn.execute(EVENT, (run, 8, thread, "end", json.dumps({"run_id": str(run), "status": "success"})))
            await conn.execute("UPDATE mandate.runs SET status = 'success' WHERE run_id = %s", (run,))
        seen = await asyncio.wait_for(follower, timeout=30)
        # A client that comes back after the end it already has gets that end again, and no wait.
        again = await asyncio.wait_for(
            _collect(runs.stream({"thread_id": str(thread), "run_id": str(run)}, after=8)), timeout=30
        )
    assert seen == [(3, "values"), (4, "values"), (5, "values"), (6, "values"), (7, "values"), (8, "end")]
    assert again == [(8, "end")]


async def _collect(events: AsyncIterator[StoredEvent]) -> list[tuple[int, str]]:
    return [(e.seq, e.event) async for e in events]
