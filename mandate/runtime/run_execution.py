"""Executing one claimed run: its requester's credentials, the graph, its events, how it ends.

A worker of any replica calls :meth:`RunExecutor.execute` with a run it claimed. The requester's
token comes from the token vault, where the replica that queued the run sealed it (bound to the
run, never in the queue row); it is verified again here. A token that expired in the queue still
names its verified requester (verified as of when the run was queued) but delegates nothing: a tool
call then pauses with the ``reauthenticate`` interrupt, as for any sign-in that is no longer held. A
run claimed again after its replica died continues from its last checkpoint (LangGraph re-runs
only the unfinished node; tool effects stay single through the call ledger). However the run ends,
its lease is released together with its thread, then ``end`` (or ``error``) is appended to its log.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi.encoders import jsonable_encoder
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import GraphRecursionError
from langgraph.types import Command, StateSnapshot
from opentelemetry import propagate

from mandate.auth import Principal
from mandate.auth.errors import ExpiredTokenError
from mandate.errors import AppError
from mandate.contract import GraphContext
from mandate.gate import interrupt_kind, seal_resume
from mandate.runtime import queries
from mandate.runtime.assistants import Assistant, AssistantStore
from mandate.runtime.errors import (
    AssistantNotFoundError,
    InvalidRunError,
    LeaseLostError,
    NotInterruptedError,
    RecursionLimitError,
    RunCredentialsGoneError,
    ThreadInterruptedError,
)
from mandate.runtime.fenced_saver import LeaseFencedSaver
from mandate.runtime.run_events import RunEventLog
from mandate.runtime.run_worker import RunLease
from mandate.runtime.services import Services
from mandate.runtime.sessions import TokenRevokedError, issued_at
from mandate.runtime.webhooks import WebhookSender
from mandate.runtime.run_request import RunCreate

__all__ = [
    "RunExecutor",
    "checkpoint_metadata",
    "context_for",
    "graph_input",
    "run_token_key",
    "snapshot_body",
    "thread_config",
    "thread_values",
]

_log = logging.getLogger(__name__)

WAITS_FOR_OTHERS = ("approval",)
"""Interrupt kinds someone other than the requester answers: the requester's token goes to the vault."""

MAX_ATTEMPTS = 5
"""Claims of one run before it is ended as failed: a run that kills every replica it reaches stops there."""

_PREGEL_MODE = {"messages-tuple": "messages"}
_HIDDEN_TAG = "langsmith:hidden"


def thread_config(thread_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    """The LangGraph config that addresses a thread (and optionally one checkpoint of it)."""
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def run_token_key(run_id: str) -> str:
    """The vault's key for a queued run's token (thread ids are UUIDs, so no clash with a thread's)."""
    return f"run:{run_id}"


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


def thread_values(snapshot: StateSnapshot) -> dict[str, Any]:
    """The thread's values, with ``__interrupt__`` when it paused (the ``/runs/wait`` shape)."""
    result = jsonable_encoder(snapshot.values)
    if snapshot.interrupts:
        result["__interrupt__"] = _interrupts(snapshot)
    return result


def graph_input(snapshot: StateSnapshot, body: RunCreate) -> Any:
    """What the graph is invoked with for ``body`` on a thread in state ``snapshot`` (new input
    without the principal: :func:`with_requester` adds it where the thread has none yet).

    Raises:
        InvalidRunError: Both input and command, or neither with nothing to continue.
        NotInterruptedError: A command to resume a thread that waits for nothing.
        ThreadInterruptedError: Input for a thread that waits for an answer.
    """
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
    return {"messages": [HumanMessage(m.content) for m in body.input.messages]}


async def with_requester(
    checkpointer: BaseCheckpointSaver[Any], snapshot: StateSnapshot, given: Any, caller: Principal
) -> Any:
    """New input with ``caller`` as the requester when the thread has none yet.

    The state also shows the writes of tasks a cancelled run finished within its last step, and
    LangGraph discards those when new input arrives: while such tasks are pending, a principal seen
    in the state is looked up in the last checkpoint's own channels, where it lasts.
    """
    if not isinstance(given, dict):
        return given
    kept = bool(snapshot.values.get("principal"))
    if kept and snapshot.tasks:
        saved = await checkpointer.aget_tuple(snapshot.config)
        kept = saved is not None and bool(saved.checkpoint["channel_values"].get("principal"))
    return given if kept else {**given, "principal": caller.to_state()}


def sealed(given: Any, snapshot: StateSnapshot, *, run_id: str) -> Any:
    """A resume with each answer to one of the gate's pauses bound to this run and that pause's kind
    (see :func:`mandate.gate.seal_resume`); any other input as it is."""
    if not isinstance(given, Command):
        return given
    pending = {i.id: i.value for i in snapshot.interrupts}
    return Command(resume=seal_resume(given.resume, pending=pending, run_id=run_id))


def context_for(
    services: Services, *, thread_id: str, caller: Principal, token: str, run_id: str | None = None
) -> GraphContext:
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


def _settled_status(snapshot: StateSnapshot) -> tuple[str, str]:
    """(run status, thread status) of a run that stopped with the thread in ``snapshot``."""
    paused = bool(snapshot.interrupts or snapshot.next)
    return ("interrupted", "interrupted") if paused else ("success", "idle")


class RunExecutor:
    """Executes claimed runs for the worker of this replica."""

    def __init__(self, *, services: Services, assistants: AssistantStore, events: RunEventLog, webhooks: WebhookSender) -> None:
        self._services = services
        self._assistants = assistants
        self._events = events
        self._webhooks = webhooks

    async def assistant(self, tenant: str, assistant_id: str | None, graph_id: str) -> Assistant:
        """The named assistant if it still exists for ``graph_id``, else the graph's system assistant."""
        if assistant_id:
            try:
                found = await self._assistants.get(tenant, assistant_id)
            except AssistantNotFoundError:
                found = None
            if found is not None and found.graph_id == graph_id:
                return found
        return self._assistants.system(graph_id)

    async def execute(self, row: dict[str, Any], lease: RunLease) -> None:
        """Execute one claimed run to its end, a pause, a cancel, or until the worker stops it."""
        run_id, thread_id = str(row["run_id"]), str(row["thread_id"])
        if row["cancel_action"]:  # cancelled while queued, or while its replica was dying
            await self._finish_cancelled(row, lease)
            return
        if row["attempt"] > MAX_ATTEMPTS:
            error = {"error": "run_attempts_exhausted", "message": f"The run was started {MAX_ATTEMPTS} times and never ended."}
            await self._finish_failed(row, lease, error)
            return
        status: tuple[str, str] | None = None
        ended: dict[str, Any] | None = None
        traceparent: str | None = None
        try:
            graph = self._services.graphs[row["assistant_id"]]
            body = RunCreate.model_validate(row["kwargs"])
            token, caller = await self._credentials(row)
            snapshot = await graph.aget_state(thread_config(thread_id))
            if row["attempt"] > 1 and (snapshot.metadata or {}).get("run_id") == run_id:
                # Claimed again after its replica died: continue from this run's last checkpoint.
                if snapshot.interrupts or not snapshot.next:
                    status, ended = _settled_status(snapshot), thread_values(snapshot)
                    return
                given = None
            else:
                given = await with_requester(self._services.checkpointer, snapshot, graph_input(snapshot, body), caller)
                given = sealed(given, snapshot, run_id=run_id)
            traceparent = await self._run_graph(row, lease, body, caller, token, given)
            snapshot = await graph.aget_state(thread_config(thread_id))
            await self._vault_for_approver(thread_id, snapshot, caller, token)
            status = _settled_status(snapshot)
            ended = thread_values(snapshot)
        except asyncio.CancelledError:
            if lease.stop_reason in ("lost", "handback"):
                raise  # another replica continues it: nothing here is final
            await self._finish_cancelled(row, lease)
            raise
        except LeaseLostError:
            _log.warning("run %s: lease lost to another replica; stopped here", run_id)
        except AppError as exc:
            # The cause's class only (a dependency's words, never a token): what an operator needs to act on.
            _log.warning("run %s failed: %s (%s)", run_id, exc.code, type(exc.__cause__).__name__ if exc.__cause__ else "-")
            await self._finish_failed(row, lease, {"error": exc.code, "message": exc.message})
        except Exception as exc:  # noqa: BLE001  (a run never leaves its thread busy, whatever failed)
            _log.error("run %s failed: %s", run_id, type(exc).__name__)
            await self._finish_failed(row, lease, {"error": "internal_error", "message": "Internal error."})
        finally:
            if status is not None:
                run_status, thread_status = status
                paused = (traceparent or row.get("traceparent")) if thread_status == "interrupted" else None
                if await self._release(row, lease, run_status=run_status, thread_status=thread_status, traceparent=paused):
                    data = {"run_id": run_id, "status": run_status}
                    await self._events.append(run_id, thread_id, "end", data, result=ended or {})
                    await self._after_end(row, run_status, ended)

    async def _credentials(self, row: dict[str, Any]) -> tuple[str, Principal]:
        """The requester's token (``""`` if it expired in the queue) and their verified principal.

        Raises:
            RunCredentialsGoneError: No token is kept for the run (the user was revoked or erased).
            TokenError: The kept token no longer verifies, or its user was cut off since.
        """
        services = self._services
        queued_at = row["created_at"].timestamp()
        token = await services.vault.get(
            issuer=row["requester_issuer"], subject=row["requester_subject"],
            thread_id=run_token_key(str(row["run_id"])), now=queued_at,
        )
        if token is None:
            raise RunCredentialsGoneError("The sign-in this run was queued with is gone; sign in and run it again.")
        try:
            caller = await services.verifier.verify(token)
        except ExpiredTokenError:
            caller, token = await services.verifier.verify(token, now=queued_at), ""
        await services.sessions.check_not_revoked(caller, issued_at=issued_at(token) if token else None)
        return token, caller

    async def _run_graph(
        self, row: dict[str, Any], lease: RunLease, body: RunCreate, caller: Principal, token: str, given: Any
    ) -> str | None:
        """Stream the graph into the run's log, writing only while the lease holds; returns the root span's traceparent."""
        services = self._services
        run_id, thread_id, graph_id = str(row["run_id"]), str(row["thread_id"]), row["assistant_id"]
        tenant, _ = await services.threads.assistant_of(thread_id)
        assistant = await self.assistant(tenant, str(row["assistant_uuid"]) if row["assistant_uuid"] else None, graph_id)
        applied = assistant.run_config()
        config = {
            **applied,
            "configurable": {**applied["configurable"], "thread_id": thread_id},
            "run_id": uuid.UUID(run_id),
            "metadata": checkpoint_metadata(
                services, caller, run_id=run_id, graph_id=graph_id, assistant_id=assistant.assistant_id
            ),
        }
        context = context_for(services, thread_id=thread_id, caller=caller, token=token, run_id=run_id)
        services.audit.remember_subject(pseudonym=context.pseudonym(caller), issuer=caller.issuer, subject=caller.subject)
        # A resumed run continues the trace it paused in: one trace per run, however long the wait.
        paused_in = row.get("traceparent")
        parent = propagate.extract({"traceparent": paused_in}) if paused_in and body.command is not None else None
        carrier: dict[str, str] = {}
        await self._events.append(run_id, thread_id, "metadata", {"run_id": run_id, "attempt": row["attempt"]}, owner=lease.owner)
        fenced = LeaseFencedSaver(services.pool, serde=services.checkpointer.serde, run_id=run_id, owner=lease.owner)
        graph = services.graphs[graph_id].copy(update={"checkpointer": fenced})
        with services.tracer.start_as_current_span(f"invoke_agent {graph_id}", context=parent) as span:
            propagate.inject(carrier)
            span.set_attribute("gen_ai.operation.name", "invoke_agent")
            span.set_attribute("gen_ai.agent.id", graph_id)
            span.set_attribute("gen_ai.conversation.id", thread_id)
            span.set_attribute("mandate.run.id", run_id)
            span.set_attribute("mandate.run.attempt", row["attempt"])
            span.set_attribute("mandate.assistant.id", assistant.assistant_id)
            span.set_attribute("mandate.caller", context.pseudonym(caller))
            span.set_attribute("mandate.resume", body.command is not None)
            try:
                async for event, data in self._stream(graph, given, config, context, body):
                    await self._events.append(run_id, thread_id, event, data, owner=lease.owner)
            except GraphRecursionError as exc:
                raise RecursionLimitError(
                    f"The run took more than {config.get('recursion_limit', 25)} steps (its assistant's recursion_limit)."
                ) from exc
        return carrier.get("traceparent")

    async def _stream(
        self, graph: Any, given: Any, config: dict[str, Any], context: GraphContext, body: RunCreate
    ) -> AsyncIterator[tuple[str, Any]]:
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
            async for namespace, mode, chunk in graph.astream(given, config, **options):
                if not namespace or body.stream_subgraphs:
                    yield _event_name(mode, namespace), jsonable_encoder(chunk)
            return
        root = str(config["run_id"])
        async for event in graph.astream_events(given, config, version="v2", **options):
            if _HIDDEN_TAG in (event.get("tags") or ()):
                continue
            if event["event"] == "on_chain_stream" and event["run_id"] == root:
                namespace, mode, chunk = event["data"]["chunk"]
                if mode in forwarded and (not namespace or body.stream_subgraphs):
                    yield _event_name(mode, namespace), jsonable_encoder(chunk)
            else:
                yield "events", _jsonable(event)

    async def _vault_for_approver(self, thread_id: str, snapshot: StateSnapshot, caller: Principal, token: str) -> None:
        """Vault the requester's token when someone else answers the pending interrupt."""
        requester = snapshot.values.get("principal")
        if not requester or not token:
            return
        kinds = {interrupt_kind(i.value) for i in snapshot.interrupts}
        if kinds & set(WAITS_FOR_OTHERS) and caller.same_subject(requester):
            # A run that began before an operator cut its user off must not put the token back into
            # the vault the cut-off emptied: check again, right before sealing it.
            try:
                await self._services.sessions.check_not_revoked(caller, issued_at=issued_at(token))
            except TokenRevokedError:
                return
            await self._services.vault.put(
                issuer=caller.issuer, subject=caller.subject, thread_id=thread_id, token=token, expires_at=caller.expires_at
            )

    async def _release(
        self, row: dict[str, Any], lease: RunLease, *, run_status: str, thread_status: str, traceparent: str | None,
        delete: bool = False,
    ) -> bool:
        """End the run and free its thread in one transaction; ``False`` if the lease was lost meanwhile."""
        params = {"run_id": row["run_id"], "owner": lease.owner, "status": run_status}
        async with self._services.pool.connection() as conn, conn.transaction():
            ended = await (await conn.execute(queries.DELETE_LEASED_RUN if delete else queries.FINISH_RUN, params)).fetchone()
            if ended is None:
                return False
            release = {"thread_id": row["thread_id"], "status": thread_status, "traceparent": traceparent}
            await conn.execute(queries.RELEASE_THREAD, release)
        return True

    async def _finish_cancelled(self, row: dict[str, Any], lease: RunLease) -> None:
        """A cancelled run: ``interrupt`` keeps its checkpoints; ``rollback`` deletes them and the run."""
        run_id, thread_id = str(row["run_id"]), str(row["thread_id"])
        graph = self._services.graphs[row["assistant_id"]]
        async with self._services.pool.connection() as conn:
            found = await (await conn.execute(queries.SELECT_QUEUED_RUN, {"run_id": row["run_id"], "thread_id": row["thread_id"]})).fetchone()
            rollback = found is not None and found["cancel_action"] == "rollback"
            if rollback:
                await conn.execute(queries.DELETE_RUN_CHECKPOINTS, {"thread_id": thread_id, "run_id": run_id})
        snapshot = await graph.aget_state(thread_config(thread_id))
        thread_status = "interrupted" if snapshot.interrupts or snapshot.next else "idle"
        traceparent = row.get("traceparent")
        if await self._release(row, lease, run_status="interrupted", thread_status=thread_status, traceparent=traceparent, delete=rollback):
            await self._events.append(run_id, thread_id, "end", {"run_id": run_id, "status": "interrupted"}, result=thread_values(snapshot))
            await self._after_end(row, "interrupted", None)

    async def _finish_failed(self, row: dict[str, Any], lease: RunLease, error: dict[str, str]) -> None:
        run_id, thread_id = str(row["run_id"]), str(row["thread_id"])
        traceparent = row.get("traceparent")
        if await self._release(row, lease, run_status="error", thread_status="error", traceparent=traceparent):
            await self._events.append(run_id, thread_id, "error", error)
            await self._after_end(row, "error", None, error=error["error"])

    async def _after_end(self, row: dict[str, Any], status: str, values: dict[str, Any] | None, *, error: str | None = None) -> None:
        """Forget the run's token; delete a stateless run's thread unless it paused; call its webhook."""
        services, thread_id = self._services, str(row["thread_id"])
        async with services.pool.connection() as conn:
            await conn.execute(
                queries.DELETE_RUN_TOKEN,
                {"issuer": row["requester_issuer"], "subject": row["requester_subject"], "thread_id": run_token_key(str(row["run_id"]))},
            )
            if row["temporary"] and status != "interrupted" and row["kwargs"].get("on_completion", "delete") == "delete":
                await conn.execute(queries.DELETE_THREAD, {"thread_id": row["thread_id"]})
                await services.checkpointer.adelete_thread(thread_id)
        if row["webhook"]:
            self._webhooks.send(row["webhook"], run=row, status=status, error=error)
