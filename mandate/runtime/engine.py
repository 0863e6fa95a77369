"""The run engine of one replica: the run manager, its event log, the queue worker and webhooks."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mandate.runtime.run_events import RunEventLog, RunNotifications
from mandate.runtime.run_worker import RunWorker
from mandate.runtime.runs import RunManager
from mandate.runtime.services import Services
from mandate.runtime.webhooks import WebhookSender

__all__ = ["RunEngine", "open_run_engine"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RunEngine:
    """What the HTTP room needs of the run engine."""

    runs: RunManager
    worker: RunWorker


def replica_name(configured: str) -> str:
    """This replica's name in leases: the configured one, else host, process and a random tag."""
    return configured or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@asynccontextmanager
async def open_run_engine(services: Services) -> AsyncIterator[RunEngine]:
    """Listen for run notifications and start this replica's worker; on exit, drain it.

    Draining stops claiming, gives running runs ``shutdown_grace_seconds`` to finish and hands the
    others back to the queue, where another replica continues them from their last checkpoint.
    """
    settings = services.settings
    notifications = RunNotifications(settings.database_url)
    await notifications.start()
    events = RunEventLog(pool=services.pool, notifications=notifications)
    webhooks = WebhookSender(
        http=services.http, secret=settings.webhook_secret.get_secret_value().encode(), allowed_origins=settings.webhook_origins
    )
    runs = RunManager(services, events=events, webhooks=webhooks)
    worker = RunWorker(
        pool=services.pool,
        notifications=notifications,
        events=events,
        execute=runs.executor.execute,
        owner=replica_name(settings.replica_id),
        queue=settings.run_queue,
        concurrency=settings.run_workers,
        lease_seconds=settings.run_lease_seconds,
        event_retention_seconds=settings.run_event_retention_seconds,
    )
    worker.start()
    try:
        yield RunEngine(runs=runs, worker=worker)
    finally:
        try:
            await worker.stop(grace=settings.shutdown_grace_seconds)
            await webhooks.close(grace=min(5.0, settings.shutdown_grace_seconds))
        finally:
            await notifications.close()
