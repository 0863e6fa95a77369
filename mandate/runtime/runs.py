"""Runs: queued in Postgres, executed by any replica's worker, followed from any replica.

Creating a run validates it against the thread's state, applies the multitask strategy when the
thread already has a run (``reject``, ``enqueue``, ``interrupt``, ``rollback``), seals the caller's
token in the vault bound to the run, and inserts a pending row; the workers are woken by NOTIFY.
Waiting, streaming and joining read the run's event log (:mod:`mandate.runtime.run_events`), so
they work on every replica and survive the death of the one executing the run; cancelling records
the request on the row and notifies the replica that holds the run's lease.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

from fastapi.encoders import jsonable_encoder
from psycopg.types.json import Jsonb

from mandate.auth import Principal
from mandate.errors import AppError
from mandate.runtime import queries
from mandate.runtime.assistants import Assistant, AssistantStore, assistant_uuid
from mandate.runtime.errors import RunFailedError, RunInProgressError, RunNotFoundError, ThreadBusyError
from mandate.runtime.run_events import RunEventLog, StoredEvent
from mandate.runtime.run_execution import (
    RunExecutor,
    checkpoint_metadata,
    context_for,
    graph_input,
    run_token_key,
    snapshot_body,
    thread_config,
    thread_values,
)
from mandate.runtime.services import Services
from mandate.runtime.webhooks import WebhookSender
from mandate.runtime.run_request import RunCreate

__all__ = [
    "RunManager",
    "assistant_uuid",
    "checkpoint_metadata",
    "context_for",
    "snapshot_body",
    "stored_error",
    "thread_config",
]

TERMINAL = ("success", "error", "interrupted", "timeout")
Disconnected = Callable[[], Awaitable[bool]]


def _error_classes(base: type[AppError] = AppError) -> dict[str, type[AppError]]:
    """Error classes by code, for those built from a message alone (re-raising a remote run's error)."""
    found: dict[str, type[AppError]] = {}
    for cls in base.__subclasses__():
        if cls.__init__ is AppError.__init__ and isinstance(cls.__dict__.get("code"), str):
            found.setdefault(cls.code, cls)
        found.update({c: k for c, k in _error_classes(cls).items() if c not in found})
    return found


def stored_error(data: dict[str, Any]) -> AppError:
    """The error a run's ``error`` event records, as its own class when it has one, else :class:`RunFailedError`."""
    code, message = str(data.get("error", "run_failed")), str(data.get("message", "The run failed."))
    cls = _error_classes().get(code)
    return cls(message) if cls is not None else RunFailedError(message, code=code)


class RunManager:
    """Creates, waits for, streams, joins and cancels runs; :attr:`executor` executes the claimed ones."""

    def __init__(self, services: Services, *, events: RunEventLog, webhooks: WebhookSender) -> None:
        self._services = services
        self._webhooks = webhooks
        self.events = events
        """The runs' event log (shared with the worker)."""
        self.assistants = AssistantStore(pool=services.pool, authz=services.authz, graphs=services.graphs, descriptions=services.graph_descriptions)
        """The assistants runs resolve (the same store the ``/assistants`` routes use)."""
        self.executor = RunExecutor(services=services, assistants=self.assistants, events=events, webhooks=webhooks)
        """What the worker calls with each run it claims."""
        self._cancels: set[asyncio.Task[Any]] = set()

    async def create(
        self, *, thread_id: str, body: RunCreate, caller: Principal, token: str, temporary: bool = False
    ) -> dict[str, Any]:
        """Validate a run against the thread, apply the multitask strategy, queue it.

        Args:
            thread_id: The caller's thread (ownership is checked by the caller of this method).
            body: The request.
            caller: The verified principal of this call.
            token: Their raw access token: sealed in the vault for the run, never in its row.
            temporary: A stateless run's thread: deleted when the run ends, unless it paused
                (or ``body.on_completion`` is ``keep``).

        Raises:
            AssistantNotFoundError: The named assistant does not exist in the caller's tenant.
            ThreadBoundError: The thread runs another graph than the assistant's.
            ThreadBusyError: The thread has a run and the strategy is ``reject``.
            WebhookNotAllowedError: ``body.webhook`` is not on the allow-list.
            ProjectAuthRefusedError: The served project's own auth handler refuses the run.
        """
        services, threads = self._services, self._services.threads
        if body.webhook is not None:
            self._webhooks.check(body.webhook)
        requested = await self.assistants.get(caller.tenant, body.assistant_id) if body.assistant_id else None
        graph_id = await threads.bind(thread_id, requested.graph_id if requested else None, default=services.default_graph)
        snapshot = await services.graphs[graph_id].aget_state(thread_config(thread_id))
        graph_input(snapshot, body)  # reject a malformed request before anything is recorded
        if services.project_auth is not None:  # the project's own handler may narrow what Mandate allowed
            # As the LangGraph server gives it: the assistant the client named (graph id or UUID).
            named = body.assistant_id or graph_id
            value = {"thread_id": thread_id, "assistant_id": named, "kwargs": body.model_dump(mode="json", exclude_none=True)}
            metadata = await threads.metadata_of(thread_id)
            await services.project_auth.check(caller, "threads", "create_run", value, metadata=metadata)
        if requested is not None:
            await threads.remember_assistant(thread_id, requested.assistant_id)
        assistant = requested or await self._assistant_of_thread(thread_id, graph_id)
        run_id = uuid.uuid4()
        await services.vault.put(
            issuer=caller.issuer, subject=caller.subject, thread_id=run_token_key(str(run_id)), token=token,
            expires_at=caller.expires_at,
        )
        params = {
            "run_id": run_id,
            "thread_id": uuid.UUID(thread_id),
            "assistant_id": graph_id,
            "assistant_uuid": uuid.UUID(assistant.assistant_id),
            "metadata": Jsonb(body.metadata),
            "kwargs": Jsonb(body.model_dump(mode="json", exclude_none=True)),
            "issuer": caller.issuer,
            "subject": caller.subject,
            "temporary": temporary,
            "multitask_strategy": body.multitask_strategy,
            "webhook": body.webhook,
            "queue": services.settings.run_queue,
        }
        cancelled: list[str] = []
        try:
            async with services.pool.connection() as conn, conn.transaction():
                await conn.execute(queries.LOCK_THREAD_FOR_RUN, params)
                active = await (await conn.execute(queries.ACTIVE_RUNS_OF_THREAD, params)).fetchall()
                if active and body.multitask_strategy == "reject":
                    raise ThreadBusyError("A run is already in progress on this thread.")
                if active and body.multitask_strategy in ("interrupt", "rollback"):
                    cancel = {"thread_id": params["thread_id"], "run_ids": [r["run_id"] for r in active],
                              "action": body.multitask_strategy}
                    cancelled = [str(r["run_id"]) for r in await (await conn.execute(queries.REQUEST_CANCEL, cancel)).fetchall()]
                row = await (await conn.execute(queries.INSERT_QUEUED_RUN, params)).fetchone()
                for other in cancelled:
                    await conn.execute(queries.NOTIFY_RUNS, {"payload": f"cancel {other}"})
                await conn.execute(queries.NOTIFY_RUNS, {"payload": "queued"})
        except BaseException:
            await self._forget_token(caller.issuer, caller.subject, str(run_id))
            raise
        assert row is not None
        for other in cancelled:
            await self._settle_if_pending(thread_id, other)
        return _run_body(row)

    async def _assistant_of_thread(self, thread_id: str, graph_id: str) -> Assistant:
        """The assistant the thread's latest run named, or the graph's system assistant if it is gone."""
        tenant, remembered = await self._services.threads.assistant_of(thread_id)
        return await self.executor.assistant(tenant, remembered, graph_id)

    async def _forget_token(self, issuer: str, subject: str, run_id: str) -> None:
        async with self._services.pool.connection() as conn:
            params = {"issuer": issuer, "subject": subject, "thread_id": run_token_key(run_id)}
            await conn.execute(queries.DELETE_RUN_TOKEN, params)

    # Following a run.

    async def stream(
        self, run: dict[str, Any], *, on_disconnect: str = "continue", after: int = 0
    ) -> AsyncIterator[StoredEvent]:
        """The events of ``run`` from ``after`` until it ends; a client that leaves may cancel it."""
        thread_id, run_id = run["thread_id"], run["run_id"]
        ended = False
        try:
            async for event in self.events.follow(run_id, thread_id, after=after, idle=lambda: self._settled(thread_id, run_id)):
                ended = event.terminal
                yield event
        finally:
            if not ended and on_disconnect == "cancel":
                # The client went away (this generator is being closed): cancel in the background.
                task = asyncio.create_task(self.cancel(thread_id, run_id))
                self._cancels.add(task)
                task.add_done_callback(self._cancels.discard)

    async def wait(
        self, run: dict[str, Any], *, on_disconnect: str = "continue", disconnected: Disconnected | None = None
    ) -> dict[str, Any]:
        """Wait for ``run`` to end or pause; the thread's values (with ``__interrupt__``).

        Raises:
            AppError: The run failed (its own error, re-raised here whichever replica executed it).
        """
        thread_id, run_id = run["thread_id"], run["run_id"]

        async def idle() -> StoredEvent | None:
            if on_disconnect == "cancel" and disconnected is not None and await disconnected():
                await self._request_cancel(thread_id, [run_id], "interrupt")
            return await self._settled(thread_id, run_id)

        async for event in self.events.follow(run_id, thread_id, after=0, idle=idle):
            if event.event == "error":
                raise stored_error(event.data)
            if event.event == "end":
                return event.result if event.result is not None else await self._values_of(run)
        return {}

    async def run_and_wait(self, *, thread_id: str, body: RunCreate, caller: Principal, token: str) -> dict[str, Any]:
        """Create a run and wait for its end or pause (the ``/runs/wait`` shape).

        Raises:
            AppError: A subclass, mapped to HTTP by ``api.errors``.
        """
        return await self.wait(await self.create(thread_id=thread_id, body=body, caller=caller, token=token))

    async def join(self, thread_id: str, run_id: str) -> dict[str, Any]:
        """Wait for a run (executing anywhere) and return the thread's values.

        Raises:
            RunNotFoundError: No such run on this thread.
        """
        run = await self.get(thread_id, run_id)
        if run["status"] not in TERMINAL:
            async for event in self.events.follow(run_id, thread_id, after=await self._last_seq(run), idle=lambda: self._settled(thread_id, run_id)):
                if event.terminal:
                    break
        return await self._values_of(run)

    async def join_stream(
        self, thread_id: str, run_id: str, *, modes: Collection[str] | None, last_event_id: int | None = None,
        cancel_on_disconnect: bool = False,
    ) -> AsyncIterator[StoredEvent]:
        """Rejoin a run's stream: after ``last_event_id`` if given (a reconnect), else from now on.

        A run that already ended and is not being resumed answers its thread's ``values`` (when asked
        for) and ``end``.

        Raises:
            RunNotFoundError: No such run on this thread.
        """
        run = await self.get(thread_id, run_id)
        wanted = set(modes or ()) | {"metadata", "end", "error"}
        if last_event_id is None and run["status"] in TERMINAL:
            if not modes or "values" in modes:
                snapshot = await self._services.graphs[run["graph_id"]].aget_state(thread_config(thread_id))
                yield StoredEvent(seq=0, event="values", data=jsonable_encoder(snapshot.values))
            yield StoredEvent(seq=0, event="end", data={"run_id": run_id, "status": run["status"]})
            return
        after = last_event_id if last_event_id is not None else await self._last_seq(run)
        async for event in self.stream(run, on_disconnect="cancel" if cancel_on_disconnect else "continue", after=after):
            if not modes or event.event.split("|")[0] in wanted:
                yield event

    async def _last_seq(self, run: dict[str, Any]) -> int:
        """The seq of the run's latest stored event (0 before any): where "from now on" starts."""
        events = await self.events.read(run["run_id"], run["thread_id"], after=0)
        latest = 0
        while events:
            latest = events[-1].seq
            events = await self.events.read(run["run_id"], run["thread_id"], after=latest)
        return latest

    async def _settled(self, thread_id: str, run_id: str) -> StoredEvent | None:
        """A final event for a run whose log has none although it ended (or is gone); ``None`` while it runs."""
        try:
            run = await self.get(thread_id, run_id)
        except RunNotFoundError:
            return StoredEvent(seq=0, event="error", data={"error": "run_not_found", "message": "The run no longer exists."})
        if run["status"] not in TERMINAL:
            return None
        late = [e for e in await self.events.read(run_id, thread_id, after=0) if e.terminal]
        return late[0] if late else StoredEvent(seq=0, event="end", data={"run_id": run_id, "status": run["status"]})

    async def _values_of(self, run: dict[str, Any]) -> dict[str, Any]:
        snapshot = await self._services.graphs[run["graph_id"]].aget_state(thread_config(run["thread_id"]))
        return thread_values(snapshot)

    # Cancelling.

    async def cancel(self, thread_id: str, run_id: str, *, action: str = "interrupt") -> dict[str, Any]:
        """Cancel a run wherever it executes (or before it starts) and wait until it stopped.

        ``interrupt`` keeps the thread's checkpoints (it can be continued); ``rollback`` deletes the
        run and the checkpoints it wrote. Answers the run as it ended (as it was, if it is gone).

        Raises:
            RunNotFoundError: No such run on this thread.
        """
        run = await self.get(thread_id, run_id)
        if run["status"] in TERMINAL:
            return run
        await self._request_cancel(thread_id, [run_id], action)
        await self._settle_if_pending(thread_id, run_id)
        try:
            await self.join(thread_id, run_id)
            return await self.get(thread_id, run_id)
        except RunNotFoundError:  # rolled back: the run is gone with its checkpoints
            return {**run, "status": "interrupted"}

    async def _request_cancel(self, thread_id: str, run_ids: list[str], action: str) -> list[dict[str, Any]]:
        params = {"thread_id": uuid.UUID(thread_id), "run_ids": [uuid.UUID(r) for r in run_ids], "action": action}
        async with self._services.pool.connection() as conn, conn.transaction():
            rows = await (await conn.execute(queries.REQUEST_CANCEL, params)).fetchall()
            for row in rows:
                await conn.execute(queries.NOTIFY_RUNS, {"payload": f"cancel {row['run_id']}"})
        return list(rows)

    async def _settle_if_pending(self, thread_id: str, run_id: str) -> None:
        """End a cancelled run that no worker has claimed yet (it never starts)."""
        async with self._services.pool.connection() as conn:
            run = await (await conn.execute(queries.SELECT_QUEUED_RUN, {"run_id": uuid.UUID(run_id), "thread_id": uuid.UUID(thread_id)})).fetchone()
            if run is None or run["status"] != "pending" or not run["cancel_action"]:
                return
            query = queries.DELETE_PENDING_RUN if run["cancel_action"] == "rollback" else queries.CANCEL_PENDING_RUN
            if await (await conn.execute(query, {"run_id": run["run_id"]})).fetchone() is None:
                return  # a worker claimed it meanwhile: it ends it as cancelled
            await conn.execute(
                queries.DELETE_RUN_TOKEN,
                {"issuer": run["requester_issuer"], "subject": run["requester_subject"], "thread_id": run_token_key(run_id)},
            )
        await self.events.append(run_id, thread_id, "end", {"run_id": run_id, "status": "interrupted"}, result=await self._values_of(_run_body(run)))

    async def cancel_many(
        self, caller: Principal, *, thread_id: uuid.UUID | None, run_ids: list[uuid.UUID] | None, status: str | None,
        action: str = "interrupt",
    ) -> int:
        """Cancel the caller's runs (by thread and ids, or by status), wherever they execute; how many."""
        statuses = ["pending", "running"] if status in (None, "all") else [status]
        params = {
            "tenant": caller.tenant,
            "issuer": caller.issuer,
            "subject": caller.subject,
            "statuses": statuses,
            "thread_id": thread_id,
            "run_ids": run_ids,
        }
        async with self._services.pool.connection() as conn:
            rows = await (await conn.execute(queries.LIST_OWNED_ACTIVE_RUNS, params)).fetchall()
        for row in rows:
            await self.cancel(str(row["thread_id"]), str(row["run_id"]), action=action)
        return len(rows)

    # Records.

    async def delete(self, thread_id: str, run_id: str) -> None:
        """Delete a run's record (its thread and checkpoints stay).

        Raises:
            RunNotFoundError: No such run on this thread.
            RunInProgressError: The run is still queued or executing.
        """
        run = await self.get(thread_id, run_id)
        if run["status"] in ("pending", "running"):
            raise RunInProgressError("The run is still executing; cancel it or wait for it first.")
        async with self._services.pool.connection() as conn:
            await conn.execute(queries.DELETE_RUN, {"run_id": uuid.UUID(run_id), "thread_id": uuid.UUID(thread_id)})

    async def get(self, thread_id: str, run_id: str) -> dict[str, Any]:
        """One run of the thread.

        Raises:
            RunNotFoundError: No such run on this thread.
        """
        try:
            params = {"run_id": uuid.UUID(run_id), "thread_id": uuid.UUID(thread_id)}
        except ValueError:
            raise RunNotFoundError("Run not found.") from None
        async with self._services.pool.connection() as conn:
            row = await (await conn.execute(queries.SELECT_QUEUED_RUN, params)).fetchone()
        if row is None:
            raise RunNotFoundError("Run not found.")
        return _run_body(row)

    async def list(self, thread_id: str, *, limit: int, offset: int, status: str | None = None) -> list[dict[str, Any]]:
        """Runs of the thread, newest first."""
        params = {"thread_id": uuid.UUID(thread_id), "limit": limit, "offset": offset, "status": status}
        async with self._services.pool.connection() as conn:
            cur = await conn.execute(queries.LIST_THREAD_RUNS, params)
            return [_run_body(row) for row in await cur.fetchall()]


def _run_body(row: dict[str, Any]) -> dict[str, Any]:
    assistant = row.get("assistant_uuid")
    return jsonable_encoder(
        {
            "run_id": str(row["run_id"]),
            "thread_id": str(row["thread_id"]),
            "graph_id": row["assistant_id"],
            "assistant_id": str(assistant) if assistant else assistant_uuid(row["assistant_id"]),
            "status": row["status"],
            "metadata": row["metadata"],
            "kwargs": {},
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "multitask_strategy": row.get("multitask_strategy") or "reject",
        }
    )
