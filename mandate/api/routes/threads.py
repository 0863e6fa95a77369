"""``/threads``: create, read, search, update, delete; state, checkpoints and history."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from fastapi.encoders import jsonable_encoder
from langchain_core.messages import HumanMessage
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from mandate.runtime import queries
from mandate.api.deps import CurrentPrincipal, ServicesDep
from mandate.runtime.errors import (
    NotServedError,
    StateForkRefusedError,
    StateUpdateRefusedError,
    ThreadBusyError,
    ThreadExistsError,
    ThreadNotFoundError,
    ThreadNotIdleError,
)
from mandate.api.limits import MAX_PAGE, Metadata, PageLimit
from mandate.runtime.runs import checkpoint_metadata, snapshot_body, thread_config
from mandate.runtime.services import Services, graph_of
from mandate.api.schemas import (
    StateUpdate,
    StateUpdated,
    ThreadCount,
    ThreadCreate,
    ThreadPatch,
    ThreadPrune,
    ThreadPruned,
    ThreadPublic,
    ThreadSearch,
    ThreadSelection,
    ThreadState,
)

__all__ = ["router", "thread_body"]

router = APIRouter(prefix="/threads", tags=["threads"])


class HistoryQuery(BaseModel):
    """``POST /threads/{id}/history``: newest first; ``metadata`` filters checkpoints (e.g. by ``run_id``),
    ``checkpoint.checkpoint_ns`` names a subgraph."""

    limit: int = Field(default=10, ge=1, le=MAX_PAGE)
    before: dict[str, Any] | str | None = None
    metadata: Metadata
    checkpoint: dict[str, Any] | None = None


class CheckpointQuery(BaseModel):
    """``POST /threads/{id}/state/checkpoint``."""

    checkpoint: dict[str, Any]
    subgraphs: bool = False


def thread_body(row: dict[str, Any], values: dict[str, Any] | None = None, interrupts: dict[str, Any] | None = None) -> dict[str, Any]:
    """A thread in the LangGraph server's shape."""
    return jsonable_encoder(
        {
            "thread_id": str(row["thread_id"]),
            "status": row["status"],
            "metadata": row["metadata"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "values": values or {},
            "interrupts": interrupts or {},
        }
    )


async def _thread_with_values(services: Services, row: dict[str, Any]) -> dict[str, Any]:
    snapshot = await graph_of(services, row).aget_state(thread_config(str(row["thread_id"])))
    interrupts = {t.id: [{"value": i.value, "id": i.id} for i in t.interrupts] for t in snapshot.tasks if t.interrupts}
    return thread_body(row, jsonable_encoder(snapshot.values), interrupts)


@router.post("", response_model=ThreadPublic)
async def create_thread(body: ThreadCreate, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """Create a thread owned by the caller."""
    if services.project_auth is not None:
        value = {"thread_id": body.thread_id, "metadata": dict(body.metadata)}
        await services.project_auth.check(principal, "threads", "create", value, metadata=body.metadata)
    try:
        row = await services.threads.create(principal, thread_id=body.thread_id, metadata=body.metadata)
    except ThreadExistsError:
        if body.if_exists == "do_nothing" and body.thread_id:
            row = await services.threads.get(principal, body.thread_id)
        else:
            raise
    return thread_body(row)


@router.post("/search", response_model=list[ThreadSelection], response_model_exclude_unset=True)
async def search_threads(body: ThreadSearch, principal: CurrentPrincipal, services: ServicesDep) -> list[dict[str, Any]]:
    """The caller's threads in their tenant: newest activity first unless ``sort_by`` / ``sort_order`` say otherwise."""
    rows = await services.threads.search(
        principal,
        status=body.status,
        metadata=body.metadata,
        limit=body.limit,
        offset=body.offset,
        ids=body.ids,
        sort_by=body.sort_by,
        sort_order=body.sort_order,
    )
    found = [await _thread_with_values(services, row) for row in rows]
    if body.select:
        return [{k: v for k, v in thread.items() if k in body.select} for thread in found]
    return found


@router.post("/count")
async def count_threads(body: ThreadCount, principal: CurrentPrincipal, services: ServicesDep) -> int:
    """How many of the caller's threads match the filters."""
    return await services.threads.count(principal, status=body.status, metadata=body.metadata)


@router.post("/prune", response_model=ThreadPruned)
async def prune_threads(body: ThreadPrune, principal: CurrentPrincipal, services: ServicesDep) -> ThreadPruned:
    """Delete the caller's named threads, or keep only their latest checkpoint; others' ids are skipped.

    A thread with a run in progress is skipped too (pruning under a run would race it).
    """
    pruned = 0
    for key in dict.fromkeys(body.thread_ids):
        thread_id = str(key)
        try:
            row = await services.threads.get(principal, thread_id)
        except ThreadNotFoundError:
            continue
        if row["status"] == "busy":
            continue
        if body.strategy == "delete":
            await services.threads.delete(principal, thread_id)
            await services.checkpointer.adelete_thread(thread_id)
        else:
            await services.checkpointer.aprune([thread_id], strategy="keep_latest")
        pruned += 1
    return ThreadPruned(pruned_count=pruned)


@router.get("/{thread_id}", response_model=ThreadPublic)
async def get_thread(thread_id: str, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """One of the caller's threads, with its current values and pending interrupts."""
    return await _thread_with_values(services, await services.threads.get(principal, thread_id))


@router.patch("/{thread_id}", response_model=ThreadPublic | None)
async def patch_thread(
    thread_id: str, body: ThreadPatch, principal: CurrentPrincipal, services: ServicesDep,
    prefer: Annotated[str | None, Header()] = None,
) -> Any:
    """Merge metadata into one of the caller's threads (``Prefer: return=minimal`` answers 204)."""
    await services.threads.get(principal, thread_id)
    async with services.pool.connection() as conn:
        await conn.execute(queries.UPDATE_THREAD_METADATA, {"thread_id": uuid.UUID(thread_id), "metadata": Jsonb(body.metadata)})
    if prefer and "return=minimal" in prefer.replace(" ", "").lower():
        return Response(status_code=204)
    return await _thread_with_values(services, await services.threads.get(principal, thread_id))


@router.delete("/{thread_id}", status_code=204)
async def delete_thread(thread_id: str, principal: CurrentPrincipal, services: ServicesDep) -> Response:
    """Delete the caller's thread and its checkpoints."""
    await services.threads.delete(principal, thread_id)
    await services.checkpointer.adelete_thread(thread_id)
    return Response(status_code=204)


@router.get("/{thread_id}/state", response_model=ThreadState, response_model_exclude_unset=True)
async def get_state(thread_id: str, principal: CurrentPrincipal, services: ServicesDep, subgraphs: bool = False) -> dict[str, Any]:
    """The thread's current state: values, next nodes, pending interrupts (``subgraphs``: tasks' own state)."""
    row = await services.threads.get(principal, thread_id)
    return snapshot_body(await graph_of(services, row).aget_state(thread_config(thread_id), subgraphs=subgraphs))


@router.post("/{thread_id}/state", response_model=StateUpdated, response_model_exclude_unset=True)
async def update_state(thread_id: str, body: StateUpdate, principal: CurrentPrincipal, services: ServicesDep) -> StateUpdated:
    """Add user messages to an idle thread (Studio's state editor); nothing else is writable.

    A thread that is running, paused at an interrupt or stopped between nodes refuses: a write
    there could move it past a gate. ``checkpoint`` / ``checkpoint_id`` may name the latest
    checkpoint only (what Studio sends); an older one would fork the thread. ``values: null`` is a
    checkpoint-only update: nothing is written and the current checkpoint is answered. The next run
    starts from the graph's entry.
    """
    row = await services.threads.get(principal, thread_id)
    if row["status"] == "busy":
        raise ThreadBusyError("A run is in progress on this thread.")
    graph = graph_of(services, row)
    snapshot = await graph.aget_state(thread_config(thread_id))
    if not snapshot.values:
        raise StateUpdateRefusedError("The thread has never run: there is no state to update yet.")
    current = (snapshot.config or {}).get("configurable", {})
    named = body.named_checkpoint
    if named and named != current.get("checkpoint_id"):
        raise StateForkRefusedError("A state write may name only the thread's latest checkpoint (no forks).")
    if snapshot.interrupts or snapshot.next:
        raise ThreadNotIdleError("The thread is paused or unfinished; answer or continue it instead of writing state.")
    if body.values is None:
        return StateUpdated.model_validate({"checkpoint": current})
    config = {**thread_config(thread_id), "metadata": checkpoint_metadata(services, principal, graph_id=row["assistant_id"] or "")}
    written = await graph.aupdate_state(config, {"messages": [HumanMessage(m.content) for m in body.values.messages]})
    return StateUpdated.model_validate({"checkpoint": written["configurable"]})


@router.get("/{thread_id}/state/{checkpoint_id}", response_model=ThreadState, response_model_exclude_unset=True)
async def get_state_at(
    thread_id: str, checkpoint_id: str, principal: CurrentPrincipal, services: ServicesDep, subgraphs: bool = False
) -> dict[str, Any]:
    """The thread's state at one checkpoint."""
    row = await services.threads.get(principal, thread_id)
    config = thread_config(thread_id, checkpoint_id)
    return snapshot_body(await graph_of(services, row).aget_state(config, subgraphs=subgraphs))


@router.post("/{thread_id}/state/checkpoint", response_model=ThreadState, response_model_exclude_unset=True)
async def post_state_at(thread_id: str, body: CheckpointQuery, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """The thread's state at the checkpoint named in the body."""
    row = await services.threads.get(principal, thread_id)
    checkpoint_id = body.checkpoint.get("checkpoint_id")
    config = thread_config(thread_id, checkpoint_id)
    return snapshot_body(await graph_of(services, row).aget_state(config, subgraphs=body.subgraphs))


async def _history(services: Services, row: dict[str, Any], query: HistoryQuery) -> list[dict[str, Any]]:
    thread_id = str(row["thread_id"])
    before = query.before.get("checkpoint_id") if isinstance(query.before, dict) else query.before
    config = thread_config(thread_id)
    namespace = (query.checkpoint or {}).get("checkpoint_ns")
    if namespace:  # a subgraph's own checkpoints
        config["configurable"]["checkpoint_ns"] = str(namespace)
    states = []
    async for snapshot in graph_of(services, row).aget_state_history(
        config,
        filter=query.metadata or None,
        limit=query.limit,
        before=thread_config(thread_id, before) if before else None,
    ):
        states.append(snapshot_body(snapshot))
    return states


@router.post("/{thread_id}/history", response_model=list[ThreadState], response_model_exclude_unset=True)
async def post_history(thread_id: str, body: HistoryQuery, principal: CurrentPrincipal, services: ServicesDep) -> list[dict[str, Any]]:
    """Past states of the thread, newest first."""
    return await _history(services, await services.threads.get(principal, thread_id), body)


@router.get("/{thread_id}/history", response_model=list[ThreadState], response_model_exclude_unset=True)
async def get_history(thread_id: str, principal: CurrentPrincipal, services: ServicesDep, limit: PageLimit = 10) -> list[dict[str, Any]]:
    """Past states of the thread, newest first."""
    return await _history(services, await services.threads.get(principal, thread_id), HistoryQuery(limit=limit))


@router.post("/{thread_id}/copy", include_in_schema=False)
async def copy_thread(thread_id: str, principal: CurrentPrincipal, services: ServicesDep) -> None:
    """Not served yet: the Postgres checkpointer has no copy, and a copy must not carry another thread's decisions."""
    await services.threads.get(principal, thread_id)
    raise NotServedError("Copying a thread is not served yet.")


@router.get("/{thread_id}/stream", include_in_schema=False)
async def join_thread_stream(thread_id: str, principal: CurrentPrincipal, services: ServicesDep) -> None:
    """Not served yet: joining a thread's stream across runs (join a run's stream instead)."""
    await services.threads.get(principal, thread_id)
    raise NotServedError("Joining a thread's stream is not served yet; join the run's stream.")


@router.post("/{thread_id}/commands", include_in_schema=False)
async def protocol_commands(thread_id: str, principal: CurrentPrincipal, services: ServicesDep) -> None:
    """Not served yet: the thread streaming protocol's commands (``client.threads.stream``); use runs."""
    await services.threads.get(principal, thread_id)
    raise NotServedError("The thread streaming protocol is not served yet; use /threads/{id}/runs/stream.")


@router.post("/{thread_id}/stream/events", include_in_schema=False)
async def protocol_events(thread_id: str, principal: CurrentPrincipal, services: ServicesDep) -> None:
    """Not served yet: the thread streaming protocol's event stream (``client.threads.stream``); use runs."""
    await services.threads.get(principal, thread_id)
    raise NotServedError("The thread streaming protocol is not served yet; use /threads/{id}/runs/stream.")
