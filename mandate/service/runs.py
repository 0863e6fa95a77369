"""Runs: the graph executed for one caller on one thread, waited for, streamed, or in the background.

Every run claims its thread (one run at a time), carries the caller's verified principal and token
in the runtime context (never in state), opens the root span, mirrors a pending decision into the
approval queue, and records how it ended on the run and the thread, however it ends.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi.encoders import jsonable_encoder
from langchain_core.messages import HumanMessage
from langgraph.types import Command, StateSnapshot
from opentelemetry import propagate
from psycopg.types.json import Jsonb

from mandate.auth import Principal
from mandate.gate import interrupt_kind
from mandate.graphs import ASSISTANT_ID, GraphContext
from mandate.service import queries
from mandate.service.errors import (
    AssistantNotFoundError,
    InvalidRunError,
    NotInterruptedError,
    RunNotFoundError,
    ThreadInterruptedError,
)
from mandate.service.runtime import Services
from mandate.service.schemas import RunCreate

__all__ = [
    "RunEvent",
    "RunManager",
    "assistant_uuid",
    "context_for",
    "resolve_assistant",
    "snapshot_body",
    "thread_config",
]

WAITS_FOR_OTHERS = ("approval",)
"""Interrupt kinds someone other than the requester answers: the requester's token goes to the vault."""

_PREGEL_MODE = {"messages-tuple": "messages"}


@dataclass(frozen=True, kw_only=True, slots=True)
class RunEvent:
    """One server-sent event of a run (``metadata``, a stream mode, ``end`` or ``error``)."""

    event: str
    data: Any


def thread_config(thread_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    """The LangGraph config that addresses a thread (and optionally one checkpoint of it)."""
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def _interrupts(snapshot: StateSnapshot) -> list[dict[str, Any]]:
    return [{"value": i.value, "id": i.id} for i in snapshot.interrupts]


def snapshot_body(snapshot: StateSnapshot) -> dict[str, Any]:
    """A thread's state in the LangGraph server's shape."""
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
                    "state": None,
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


def context_for(services: Services, *, thread_id: str, caller: Principal, token: str) -> GraphContext:
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
        trace_content=services.settings.trace_content,
    )


def _event_name(mode: str, namespace: tuple[str, ...]) -> str:
    return "|".join([mode, *namespace]) if namespace else mode


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


class RunManager:
    """Creates, executes, streams, joins and cancels runs; background runs are tasks of this process."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._tasks: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def create(self, *, thread_id: str, body: RunCreate, caller: Principal) -> dict[str, Any]:
        """Validate the request against the thread's state and record a pending run."""
        requested = resolve_assistant(self._services, body.assistant_id) if body.assistant_id else None
        graph_id = await self._services.threads.bind(thread_id, requested, default=ASSISTANT_ID)
        snapshot = await self._services.graphs[graph_id].aget_state(thread_config(thread_id))
        _graph_input(snapshot, body, caller)  # reject a malformed request before anything is recorded
        async with self._services.pool.connection() as conn:
            cur = await conn.execute(
                queries.INSERT_RUN,
                {"run_id": uuid.uuid4(), "thread_id": uuid.UUID(thread_id), "assistant_id": graph_id, "metadata": Jsonb(body.metadata)},
            )
            row = await cur.fetchone()
        assert row is not None
        return _run_body(row)

    async def events(
        self, run: dict[str, Any], *, body: RunCreate, caller: Principal, token: str
    ) -> AsyncIterator[RunEvent]:
        """Execute ``run`` and yield its events; the thread and run records are settled however it ends."""
        services, thread_id, run_id = self._services, run["thread_id"], run["run_id"]
        graph = services.graphs[run["graph_id"]]
        config = thread_config(thread_id)
        graph_input = _graph_input(await graph.aget_state(config), body, caller)
        context = context_for(services, thread_id=thread_id, caller=caller, token=token)
        services.audit.remember_subject(pseudonym=context.pseudonym(caller), issuer=caller.issuer, subject=caller.subject)
        paused_in = await services.threads.claim(thread_id)
        # A resumed run continues the trace it paused in: one trace per run, however long the wait.
        parent = propagate.extract({"traceparent": paused_in}) if paused_in and body.command is not None else None
        carrier: dict[str, str] = {}
        thread_status, run_status = "error", "error"
        await self._set_run(run_id, "running")
        try:
            yield RunEvent(event="metadata", data={"run_id": run_id, "attempt": 1})
            with services.tracer.start_as_current_span(f"invoke_agent {run['graph_id']}", context=parent) as span:
                propagate.inject(carrier)
                span.set_attribute("gen_ai.operation.name", "invoke_agent")
                span.set_attribute("gen_ai.agent.id", run["graph_id"])
                span.set_attribute("gen_ai.conversation.id", thread_id)
                span.set_attribute("mandate.run.id", run_id)
                span.set_attribute("mandate.caller", context.pseudonym(caller))
                span.set_attribute("mandate.resume", body.command is not None)
                modes = [_PREGEL_MODE.get(m, m) for m in body.stream_modes]
                async for namespace, mode, chunk in graph.astream(
                    graph_input,
                    config,
                    context=context,
                    stream_mode=list(dict.fromkeys(modes)),
                    subgraphs=True,
                    interrupt_before=body.interrupt_before,
                    interrupt_after=body.interrupt_after,
                ):
                    if namespace and not body.stream_subgraphs:
                        continue
                    yield RunEvent(event=_event_name(mode, namespace), data=jsonable_encoder(chunk))
            snapshot = await graph.aget_state(config)
            thread_status = "interrupted" if snapshot.interrupts or snapshot.next else "idle"
            run_status = "interrupted" if snapshot.interrupts or snapshot.next else "success"
            await _after_run(services, thread_id=thread_id, snapshot=snapshot, caller=caller, token=token)
            yield RunEvent(event="end", data={"run_id": run_id, "status": run_status})
        except asyncio.CancelledError:
            thread_status, run_status = "interrupted", "interrupted"
            raise
        finally:
            paused = carrier.get("traceparent") if thread_status == "interrupted" else None
            await services.threads.release(thread_id, thread_status, traceparent=paused)
            await self._set_run(run_id, run_status)

    async def wait(self, run: dict[str, Any], *, body: RunCreate, caller: Principal, token: str) -> dict[str, Any]:
        """Execute ``run`` to its end or pause; returns the thread's values (with ``__interrupt__``)."""
        async for _ in self.events(run, body=body, caller=caller, token=token):
            pass
        return await self._values(run)

    async def run_and_wait(self, *, thread_id: str, body: RunCreate, caller: Principal, token: str) -> dict[str, Any]:
        """Create a run and execute it to its end or pause (the ``/runs/wait`` shape).

        Raises:
            AppError: A subclass, mapped to HTTP by ``service.errors``.
        """
        run = await self.create(thread_id=thread_id, body=body, caller=caller)
        return await self.wait(run, body=body, caller=caller, token=token)

    def start(self, run: dict[str, Any], *, body: RunCreate, caller: Principal, token: str) -> None:
        """Execute ``run`` in the background of this process."""
        task = asyncio.create_task(self.wait(run, body=body, caller=caller, token=token))
        self._tasks[run["run_id"]] = task
        task.add_done_callback(lambda _: self._tasks.pop(run["run_id"], None))

    async def join(self, thread_id: str, run_id: str) -> dict[str, Any]:
        """Wait for a background run and return the thread's values."""
        run = await self.get(thread_id, run_id)
        task = self._tasks.get(run_id)
        if task is not None:
            await asyncio.wait({task})
        return await self._values(run)

    async def _values(self, run: dict[str, Any]) -> dict[str, Any]:
        """The thread's values after ``run``, with ``__interrupt__`` when it paused."""
        snapshot = await self._services.graphs[run["graph_id"]].aget_state(thread_config(run["thread_id"]))
        result = jsonable_encoder(snapshot.values)
        if snapshot.interrupts:
            result["__interrupt__"] = _interrupts(snapshot)
        return result

    async def cancel(self, thread_id: str, run_id: str) -> dict[str, Any]:
        """Cancel a background run; the thread keeps its last checkpoint and can be continued."""
        await self.get(thread_id, run_id)
        task = self._tasks.get(run_id)
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        return await self.get(thread_id, run_id)

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
            row = await (await conn.execute(queries.SELECT_RUN, {"run_id": key, "thread_id": uuid.UUID(thread_id)})).fetchone()
        if row is None:
            raise RunNotFoundError("Run not found.")
        return _run_body(row)

    async def list(self, thread_id: str, *, limit: int, offset: int) -> list[dict[str, Any]]:
        """Runs of the thread, newest first."""
        async with self._services.pool.connection() as conn:
            cur = await conn.execute(queries.LIST_RUNS, {"thread_id": uuid.UUID(thread_id), "limit": limit, "offset": offset})
            return [_run_body(row) for row in await cur.fetchall()]

    async def _set_run(self, run_id: str, status: str) -> None:
        async with self._services.pool.connection() as conn:
            await conn.execute(queries.SET_RUN_STATUS, {"run_id": uuid.UUID(run_id), "status": status})


def assistant_uuid(graph_id: str) -> str:
    """The stable UUID of an assistant (LangGraph clients address assistants by UUID or graph id)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mandate:assistant:{graph_id}"))


def resolve_assistant(services: Services, assistant_id: str) -> str:
    """The graph id named by ``assistant_id`` (a graph id or an assistant UUID).

    Raises:
        AssistantNotFoundError: No such assistant.
    """
    for graph_id in services.graphs:
        if assistant_id in (graph_id, assistant_uuid(graph_id)):
            return graph_id
    raise AssistantNotFoundError(f"Assistant {assistant_id!r} not found.")


def _run_body(row: dict[str, Any]) -> dict[str, Any]:
    return jsonable_encoder(
        {
            "run_id": str(row["run_id"]),
            "thread_id": str(row["thread_id"]),
            "graph_id": row["assistant_id"],
            "assistant_id": assistant_uuid(row["assistant_id"]),
            "status": row["status"],
            "metadata": row["metadata"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "multitask_strategy": "reject",
        }
    )

