"""Runs: the graph executed for one caller on one thread, waited for, streamed, or in the background.

Every run claims its thread (one run at a time), carries the caller's verified principal and token
in the runtime context (never in state), applies only its assistant's vetted configuration, opens the
root span, mirrors a pending decision into the approval queue, and records how it ended on the run
and the thread, however it ends. Every checkpoint it writes names the run, the graph, the assistant
and the caller (as their pseudonym, never a token). A stateless run's temporary thread is deleted when
the run ends, unless the run paused there (then it stays for its owner to answer).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from typing import Any

from fastapi.encoders import jsonable_encoder
from langchain_core.messages import HumanMessage
from langgraph.errors import GraphRecursionError
from langgraph.types import Command, StateSnapshot
from opentelemetry import propagate
from psycopg.types.json import Jsonb

from mandate.auth import Principal
from mandate.gate import interrupt_kind
from mandate.gate import seal_resume
from mandate.graphs import ASSISTANT_ID
from mandate.contract.state import GraphContext
from mandate.runtime import queries
from mandate.runtime.assistants import Assistant, AssistantStore, assistant_uuid
from mandate.runtime.errors import (
    AssistantNotFoundError,
    InvalidRunError,
    NotInterruptedError,
    RecursionLimitError,
    RunInProgressError,
    RunNotFoundError,
    ThreadInterruptedError,
)
from mandate.runtime.services import Services
from mandate.api.schemas import RunCreate

__all__ = [
    "RunEvent",
    "RunManager",
    "assistant_uuid",
    "checkpoint_metadata",
    "context_for",
    "snapshot_body",
    "thread_config",
]

WAITS_FOR_OTHERS = ("approval",)
"""Interrupt kinds someone other than the requester answers: the requester's token goes to the vault."""

_PREGEL_MODE = {"messages-tuple": "messages"}
_HIDDEN_TAG = "langsmith:hidden"


@dataclass(frozen=True, kw_only=True, slots=True)
class RunEvent:
    """One server-sent event of a run (``metadata``, a stream mode, ``events``, ``end`` or ``error``)."""

    event: str
    data: Any
    result: dict[str, Any] | None = field(default=None, repr=False)
    """On ``end`` only, never sent: the thread's values as the run left them (what ``/runs/wait`` answers)."""


def thread_config(thread_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    """The LangGraph config that addresses a thread (and optionally one checkpoint of it)."""
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def checkpoint_metadata(services: Services, caller: Principal, **facts: str) -> dict[str, str]:
    """What every checkpoint a call writes records about it: ``facts`` and the caller's pseudonym (``user_id``)."""
    return {**facts, "user_id": services.pseudonymize(caller.issuer, caller.subject)}


def _interrupts(snapshot: StateSnapshot) -> list[dict[str, Any]]:
    return [{"value": i.value, "id": i.id} for i in snapshot.interrupts]


def snapshot_body(snapshot: StateSnapshot) -> dict[str, Any]:
    """A thread's state in the LangGraph server's shape (a subgraph task's own state nested)."""
    return jsonable_encoder(
        {
            "values": snapshot.values,
            "next": list(snapshot.next),
            "tasks": [
                {
                    "id": t.id,
                    "name": t.name,
                    "error": repr(t.error) if t.error else None,
                    "interrupts": [{"value": i.value, "id": i.id} for i in t.interrupts],
                    "checkpoint": None,
                    "state": snapshot_body(t.state) if isinstance(t.state, StateSnapshot) else None,
                    "result": None,
                }
                for t in snapshot.tasks
            ],
            "interrupts": _interrupts(snapshot),
            "metadata": snapshot.metadata,
            "created_at": snapshot.created_at,
            "checkpoint": (snapshot.config or {}).get("configurable", {}),
            "parent_checkpoint": (snapshot.parent_config or {}).get("configurable") if snapshot.parent_config else None,
        }
    )


def _graph_input(snapshot: StateSnapshot, body: RunCreate, caller: Principal) -> Any:
    if body.input is not None and body.command is not None:
        raise InvalidRunError("Send either input or command, not both.")
    if body.input is None and body.command is None:
        # Neither: continue a run that stopped between nodes (a crash, a breakpoint, a cancel).
        if snapshot.interrupts or not snapshot.next:
            raise InvalidRunError("Send input, or a command to resume; there is no unfinished run to continue.")
        return None
    if body.command is not None:
        if not snapshot.interrupts:
            raise NotInterruptedError("The thread is not waiting for an answer.")
        return Command(resume=body.command.resume)
    if snapshot.interrupts:
        raise ThreadInterruptedError("The thread waits for an answer to its interrupt; resume it first.")
    assert body.input is not None
    update: dict[str, Any] = {"messages": [HumanMessage(m.content) for m in body.input.messages]}
    if not snapshot.values.get("principal"):
        update["principal"] = caller.to_state()
    return update


def _sealed(graph_input: Any, snapshot: StateSnapshot, *, run_id: str) -> Any:
    """A resume with each answer to a review bound to this run (see :func:`mandate.gate.seal_resume`)."""
    if not isinstance(graph_input, Command):
        return graph_input
    pending = {i.id: i.value for i in snapshot.interrupts}
    return Command(resume=seal_resume(graph_input.resume, pending=pending, run_id=run_id))


def context_for(services: Services, *, thread_id: str, caller: Principal, token: str, run_id: str | None = None) -> GraphContext:
    """The runtime context of one call: the services, the verified caller and (only here) their token."""
    return GraphContext(
        caller=caller,
        subject_token=token,
        thread_id=thread_id,
        authz=services.authz,
        retriever=services.retriever,
        tools=services.tools,
        brokers=services.brokers,
        vault=services.vault,
        ledger=services.ledger,
        verifier=services.verifier,
        downstream=services.http,
        audit=services.audit,
        planner=services.planner,
        responder=services.responder,
        pseudonymize=services.pseudonymize,
        tracer=services.tracer,
        clock=time.time,
        run_id=run_id,
        trace_content=services.settings.trace_content,
    )


def _event_name(mode: str, namespace: tuple[str, ...]) -> str:
    return "|".join([mode, *namespace]) if namespace else mode


def _jsonable(value: Any) -> Any:
    """``value`` as JSON data; what has no JSON form (a callback, a client) becomes its type's name."""
    try:
        return jsonable_encoder(value)
    except (TypeError, ValueError, RecursionError):
        if isinstance(value, dict):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_jsonable(v) for v in value]
        return f"<{type(value).__name__}>"


async def _after_run(
    services: Services, *, thread_id: str, snapshot: StateSnapshot, caller: Principal, token: str
) -> None:
    """Vault the requester's token when someone else answers the pending interrupt."""
    requester = snapshot.values.get("principal")
    if not requester:
        return
    kinds = {interrupt_kind(i.value) for i in snapshot.interrupts}
    if kinds & set(WAITS_FOR_OTHERS) and caller.same_subject(requester):
        await services.vault.put(
            issuer=caller.issuer, subject=caller.subject, thread_id=thread_id, token=token, expires_at=caller.expires_at
        )


def _values(snapshot: StateSnapshot) -> dict[str, Any]:
    """The thread's values, with ``__interrupt__`` when it paused (the ``/runs/wait`` shape)."""
    result = jsonable_encoder(snapshot.values)
    if snapshot.interrupts:
        result["__interrupt__"] = _interrupts(snapshot)
    return result


class RunManager:
    """Creates, executes, streams, joins and cancels runs; background runs are tasks of this process."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._tasks: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._listeners: dict[str, list[asyncio.Queue[RunEvent | None]]] = {}
        self.assistants = AssistantStore(pool=services.pool, authz=services.authz, graphs=services.graphs)
        """The assistants runs resolve (the same store the ``/assistants`` routes use)."""

    async def create(self, *, thread_id: str, body: RunCreate, caller: Principal) -> dict[str, Any]:
        """Resolve the run's assistant, validate the request against the thread's state, record a pending run.

        Raises:
            AssistantNotFoundError: The named assistant does not exist in the caller's tenant.
            ThreadBoundError: The thread runs another graph than the assistant's.
        """
        threads = self._services.threads
        requested = await self.assistants.get(caller.tenant, body.assistant_id) if body.assistant_id else None
        graph_id = await threads.bind(thread_id, requested.graph_id if requested else None, default=ASSISTANT_ID)
        snapshot = await self._services.graphs[graph_id].aget_state(thread_config(thread_id))
        _graph_input(snapshot, body, caller)  # reject a malformed request before anything is recorded
        if requested is not None:
            await threads.remember_assistant(thread_id, requested.assistant_id)
        assistant = requested or await self._assistant_of_thread(thread_id, graph_id)
        params = {
            "run_id": uuid.uuid4(),
            "thread_id": uuid.UUID(thread_id),
            "assistant_id": graph_id,
            "assistant_uuid": uuid.UUID(assistant.assistant_id),
            "metadata": Jsonb(body.metadata),
        }
        async with self._services.pool.connection() as conn:
            row = await (await conn.execute(queries.INSERT_RUN_WITH_ASSISTANT, params)).fetchone()
        assert row is not None
        return _run_body(row)

    async def _assistant_of_thread(self, thread_id: str, graph_id: str) -> Assistant:
        """The assistant the thread's latest run named, or the graph's system assistant if it is gone."""
        tenant, remembered = await self._services.threads.assistant_of(thread_id)
        return await self._assistant(tenant, remembered, graph_id)

    async def _assistant(self, tenant: str, assistant_id: str | None, graph_id: str) -> Assistant:
        if assistant_id:
            try:
                found = await self.assistants.get(tenant, assistant_id)
            except AssistantNotFoundError:
                found = None
            if found is not None and found.graph_id == graph_id:
                return found
        return self.assistants.system(graph_id)

    async def events(
        self, run: dict[str, Any], *, body: RunCreate, caller: Principal, token: str, temporary: bool = False
    ) -> AsyncIterator[RunEvent]:
        """Execute ``run`` and yield its events; the thread and run records are settled however it ends.

        Args:
            run: The run, as :meth:`create` recorded it.
            body: The request that created it.
            caller: The verified principal of this call.
            token: Their raw access token (reaches only the runtime context).
            temporary: The thread is a stateless run's: deleted at the end unless the run paused
                (or ``body.on_completion`` is ``keep``).

        Raises:
            RecursionLimitError: The run took more steps than its assistant's ``recursion_limit``.
        """
        services, thread_id, run_id, graph_id = self._services, run["thread_id"], run["run_id"], run["graph_id"]
        graph = services.graphs[graph_id]
        self._listeners.setdefault(run_id, [])
        try:
            tenant, _ = await services.threads.assistant_of(thread_id)
            assistant = await self._assistant(tenant, run["assistant_id"], graph_id)
            applied = assistant.run_config()
            config = {
                **applied,
                "configurable": {**applied["configurable"], "thread_id": thread_id},
                "run_id": uuid.UUID(run_id),
                "metadata": checkpoint_metadata(
                    services, caller, run_id=run_id, graph_id=graph_id, assistant_id=assistant.assistant_id
                ),
            }
            snapshot = await graph.aget_state(thread_config(thread_id))
            graph_input = _sealed(_graph_input(snapshot, body, caller), snapshot, run_id=run_id)
            paused_in = await services.threads.claim(thread_id)
        except BaseException:
            self._close_listeners(run_id)
            raise
        context = context_for(services, thread_id=thread_id, caller=caller, token=token, run_id=run_id)
        services.audit.remember_subject(pseudonym=context.pseudonym(caller), issuer=caller.issuer, subject=caller.subject)
        # A resumed run continues the trace it paused in: one trace per run, however long the wait.
        parent = propagate.extract({"traceparent": paused_in}) if paused_in and body.command is not None else None
        carrier: dict[str, str] = {}
        thread_status, run_status = "error", "error"
        await self._set_run(run_id, "running")
        try:
            yield self._publish(run_id, RunEvent(event="metadata", data={"run_id": run_id, "attempt": 1}))
            with services.tracer.start_as_current_span(f"invoke_agent {graph_id}", context=parent) as span:
                propagate.inject(carrier)
                span.set_attribute("gen_ai.operation.name", "invoke_agent")
                span.set_attribute("gen_ai.agent.id", graph_id)
                span.set_attribute("gen_ai.conversation.id", thread_id)
                span.set_attribute("mandate.run.id", run_id)
                span.set_attribute("mandate.assistant.id", assistant.assistant_id)
                span.set_attribute("mandate.caller", context.pseudonym(caller))
                span.set_attribute("mandate.resume", body.command is not None)
                try:
                    async for event in self._execute(graph, graph_input, config, context, body):
                        yield self._publish(run_id, event)
                except GraphRecursionError as exc:
                    raise RecursionLimitError(
                        f"The run took more than {config.get('recursion_limit', 25)} steps (its assistant's recursion_limit)."
                    ) from exc
            snapshot = await graph.aget_state(thread_config(thread_id))
            thread_status = "interrupted" if snapshot.interrupts or snapshot.next else "idle"
            run_status = "interrupted" if snapshot.interrupts or snapshot.next else "success"
            await _after_run(services, thread_id=thread_id, snapshot=snapshot, caller=caller, token=token)
            end = RunEvent(event="end", data={"run_id": run_id, "status": run_status}, result=_values(snapshot))
            yield self._publish(run_id, end)
        except asyncio.CancelledError:
            thread_status, run_status = "interrupted", "interrupted"
            raise
        finally:
            self._close_listeners(run_id)
            paused = carrier.get("traceparent") if thread_status == "interrupted" else None
            await services.threads.release(thread_id, thread_status, traceparent=paused)
            await self._set_run(run_id, run_status)
            if temporary and thread_status != "interrupted" and body.on_completion == "delete":
                await services.threads.delete(caller, thread_id)
                await services.checkpointer.adelete_thread(thread_id)

    async def _execute(
        self, graph: Any, graph_input: Any, config: dict[str, Any], context: GraphContext, body: RunCreate
    ) -> AsyncIterator[RunEvent]:
        """The graph's stream in the requested modes; with ``events``, LangChain's ``astream_events`` (v2) as well."""
        requested = body.stream_modes
        modes = list(dict.fromkeys(_PREGEL_MODE.get(m, m) for m in requested if m != "events")) or ["values"]
        forwarded = {_PREGEL_MODE.get(m, m) for m in requested}
        options = {
            "context": context,
            "stream_mode": modes,
            "subgraphs": True,
            "interrupt_before": body.interrupt_before,
            "interrupt_after": body.interrupt_after,
        }
        if "events" not in requested:
            async for namespace, mode, chunk in graph.astream(graph_input, config, **options):
                if not namespace or body.stream_subgraphs:
                    yield RunEvent(event=_event_name(mode, namespace), data=jsonable_encoder(chunk))
            return
        root = str(config["run_id"])
        async for event in graph.astream_events(graph_input, config, version="v2", **options):
            if _HIDDEN_TAG in (event.get("tags") or ()):
                continue
            if event["event"] == "on_chain_stream" and event["run_id"] == root:
                namespace, mode, chunk = event["data"]["chunk"]
                if mode in forwarded and (not namespace or body.stream_subgraphs):
                    yield RunEvent(event=_event_name(mode, namespace), data=jsonable_encoder(chunk))
            else:
                yield RunEvent(event="events", data=_jsonable(event))

    def _close_listeners(self, run_id: str) -> None:
        """Tell everyone joined to the run's stream that it is over."""
        for listener in self._listeners.pop(run_id, []):
            listener.put_nowait(None)

    def _publish(self, run_id: str, event: RunEvent) -> RunEvent:
        """Hand ``event`` to everyone joined to the run's stream (in this process); returns it."""
        for listener in self._listeners.get(run_id, ()):
            listener.put_nowait(event)
        return event

    async def wait(
        self, run: dict[str, Any], *, body: RunCreate, caller: Principal, token: str, temporary: bool = False
    ) -> dict[str, Any]:
        """Execute ``run`` to its end or pause; returns the thread's values (with ``__interrupt__``)."""
        result: dict[str, Any] = {}
        async for event in self.events(run, body=body, caller=caller, token=token, temporary=temporary):
            if event.result is not None:
                result = event.result
        return result

    async def run_and_wait(self, *, thread_id: str, body: RunCreate, caller: Principal, token: str) -> dict[str, Any]:
        """Create a run and execute it to its end or pause (the ``/runs/wait`` shape).

        Raises:
            AppError: A subclass, mapped to HTTP by ``service.errors``.
        """
        run = await self.create(thread_id=thread_id, body=body, caller=caller)
        return await self.wait(run, body=body, caller=caller, token=token)

    def start(self, run: dict[str, Any], *, body: RunCreate, caller: Principal, token: str, temporary: bool = False) -> None:
        """Execute ``run`` in the background of this process."""
        self._listeners.setdefault(run["run_id"], [])
        task = asyncio.create_task(self.wait(run, body=body, caller=caller, token=token, temporary=temporary))
        self._tasks[run["run_id"]] = task
        task.add_done_callback(lambda _: self._tasks.pop(run["run_id"], None))

    async def join(self, thread_id: str, run_id: str) -> dict[str, Any]:
        """Wait for a background run and return the thread's values."""
        run = await self.get(thread_id, run_id)
        task = self._tasks.get(run_id)
        if task is not None:
            await asyncio.wait({task})
        snapshot = await self._services.graphs[run["graph_id"]].aget_state(thread_config(run["thread_id"]))
        return _values(snapshot)

    async def join_stream(self, thread_id: str, run_id: str, *, modes: Collection[str] | None) -> AsyncIterator[RunEvent]:
        """The run's events from now on, while it executes in this process; then ``end``.

        A run that already ended (or executes on another replica) answers its thread's ``values``
        (when asked for) and ``end``: events are not stored, so there is nothing to replay.

        Raises:
            RunNotFoundError: No such run on this thread.
        """
        run = await self.get(thread_id, run_id)
        listeners = self._listeners.get(run_id)
        wanted = set(modes or ()) | {"metadata", "end", "error"}
        if listeners is None:
            if not modes or "values" in modes:
                snapshot = await self._services.graphs[run["graph_id"]].aget_state(thread_config(thread_id))
                yield RunEvent(event="values", data=jsonable_encoder(snapshot.values))
            yield RunEvent(event="end", data={"run_id": run_id, "status": run["status"]})
            return
        queue: asyncio.Queue[RunEvent | None] = asyncio.Queue()
        listeners.append(queue)
        try:
            while (event := await queue.get()) is not None:
                if not modes or event.event.split("|")[0] in wanted:
                    yield event
                if event.event == "end":
                    return
        finally:
            if queue in listeners:
                listeners.remove(queue)

    async def cancel(self, thread_id: str, run_id: str) -> dict[str, Any]:
        """Cancel a background run; the thread keeps its last checkpoint and can be continued."""
        await self.get(thread_id, run_id)
        task = self._tasks.get(run_id)
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        return await self.get(thread_id, run_id)

    async def cancel_many(
        self, caller: Principal, *, thread_id: uuid.UUID | None, run_ids: list[uuid.UUID] | None, status: str | None
    ) -> int:
        """Cancel the caller's background runs in this process (by thread and ids, or by status); how many."""
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
        tasks = [t for row in rows if (t := self._tasks.get(str(row["run_id"]))) is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        return len(tasks)

    async def delete(self, thread_id: str, run_id: str) -> None:
        """Delete a run's record (its thread and checkpoints stay).

        Raises:
            RunNotFoundError: No such run on this thread.
            RunInProgressError: The run is still executing.
        """
        run = await self.get(thread_id, run_id)
        if run_id in self._listeners or run_id in self._tasks or run["status"] in ("pending", "running"):
            raise RunInProgressError("The run is still executing; cancel it or wait for it first.")
        async with self._services.pool.connection() as conn:
            await conn.execute(queries.DELETE_RUN, {"run_id": uuid.UUID(run_id), "thread_id": uuid.UUID(thread_id)})

    async def get(self, thread_id: str, run_id: str) -> dict[str, Any]:
        """One run of the thread.

        Raises:
            RunNotFoundError: No such run on this thread.
        """
        try:
            key = uuid.UUID(run_id)
        except ValueError:
            raise RunNotFoundError("Run not found.") from None
        async with self._services.pool.connection() as conn:
            params = {"run_id": key, "thread_id": uuid.UUID(thread_id)}
            row = await (await conn.execute(queries.SELECT_RUN_WITH_ASSISTANT, params)).fetchone()
        if row is None:
            raise RunNotFoundError("Run not found.")
        return _run_body(row)

    async def list(self, thread_id: str, *, limit: int, offset: int, status: str | None = None) -> list[dict[str, Any]]:
        """Runs of the thread, newest first."""
        params = {"thread_id": uuid.UUID(thread_id), "limit": limit, "offset": offset, "status": status}
        async with self._services.pool.connection() as conn:
            cur = await conn.execute(queries.LIST_RUNS_WITH_ASSISTANT, params)
            return [_run_body(row) for row in await cur.fetchall()]

    async def _set_run(self, run_id: str, status: str) -> None:
        async with self._services.pool.connection() as conn:
            await conn.execute(queries.SET_RUN_STATUS, {"run_id": uuid.UUID(run_id), "status": status})


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
            "multitask_strategy": "reject",
        }
    )
