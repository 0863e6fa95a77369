"""``/threads``: create, read, search, update, delete; state, checkpoints and history."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response
from fastapi.encoders import jsonable_encoder
from langchain_core.messages import HumanMessage
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from mandate.service import queries
from mandate.service.deps import CurrentPrincipal, ServicesDep
from mandate.service.errors import StateUpdateRefusedError, ThreadBusyError, ThreadExistsError, ThreadNotIdleError
from mandate.service.limits import MAX_PAGE, PageLimit
from mandate.service.runs import snapshot_body, thread_config
from mandate.service.runtime import Services, graph_of
from mandate.service.schemas import StateUpdate, ThreadCreate, ThreadPatch, ThreadSearch

__all__ = ["router", "thread_body"]

router = APIRouter(prefix="/threads", tags=["threads"])


class HistoryQuery(BaseModel):
    """``POST /threads/{id}/history``."""

    limit: int = Field(default=10, ge=1, le=MAX_PAGE)
    before: dict[str, Any] | str | None = None


class CheckpointQuery(BaseModel):
    """``POST /threads/{id}/state/checkpoint``."""

    checkpoint: dict[str, Any]


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


@router.post("")
async def create_thread(body: ThreadCreate, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """Create a thread owned by the caller."""
    try:
        row = await services.threads.create(principal, thread_id=body.thread_id, metadata=body.metadata)
    except ThreadExistsError:
        if body.if_exists == "do_nothing" and body.thread_id:
            row = await services.threads.get(principal, body.thread_id)
        else:
            raise
    return thread_body(row)


@router.post("/search")
async def search_threads(body: ThreadSearch, principal: CurrentPrincipal, services: ServicesDep) -> list[dict[str, Any]]:
    """The caller's threads in their tenant, newest first."""
    rows = await services.threads.search(
        principal, status=body.status, metadata=body.metadata, limit=body.limit, offset=body.offset
    )
    return [await _thread_with_values(services, row) for row in rows]


@router.get("/{thread_id}")
async def get_thread(thread_id: str, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """One of the caller's threads, with its current values and pending interrupts."""
    return await _thread_with_values(services, await services.threads.get(principal, thread_id))


@router.patch("/{thread_id}")
async def patch_thread(thread_id: str, body: ThreadPatch, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """Merge metadata into one of the caller's threads."""
    await services.threads.get(principal, thread_id)
    async with services.pool.connection() as conn:
        await conn.execute(queries.UPDATE_THREAD_METADATA, {"thread_id": uuid.UUID(thread_id), "metadata": Jsonb(body.metadata)})
    return await _thread_with_values(services, await services.threads.get(principal, thread_id))


@router.delete("/{thread_id}", status_code=204)
async def delete_thread(thread_id: str, principal: CurrentPrincipal, services: ServicesDep) -> Response:
    """Delete the caller's thread and its checkpoints."""
    await services.threads.delete(principal, thread_id)
    await services.checkpointer.adelete_thread(thread_id)
    return Response(status_code=204)


@router.get("/{thread_id}/state")
async def get_state(thread_id: str, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """The thread's current state: values, next nodes, pending interrupts."""
    row = await services.threads.get(principal, thread_id)
    return snapshot_body(await graph_of(services, row).aget_state(thread_config(thread_id)))


@router.post("/{thread_id}/state")
async def update_state(thread_id: str, body: StateUpdate, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """Add user messages to an idle thread (Studio's state editor); nothing else is writable.

    A thread that is running, paused at an interrupt or stopped between nodes refuses: a write
    there could move it past a gate. The next run starts from the graph's entry.
    """
    row = await services.threads.get(principal, thread_id)
    if row["status"] == "busy":
        raise ThreadBusyError("A run is in progress on this thread.")
    graph = graph_of(services, row)
    snapshot = await graph.aget_state(thread_config(thread_id))
    if not snapshot.values:
        raise StateUpdateRefusedError("The thread has never run: there is no state to update yet.")
    if snapshot.interrupts or snapshot.next:
        raise ThreadNotIdleError("The thread is paused or unfinished; answer or continue it instead of writing state.")
    if body.values is None:
        return {"checkpoint": (snapshot.config or {}).get("configurable", {})}
    config = await graph.aupdate_state(
        thread_config(thread_id), {"messages": [HumanMessage(m.content) for m in body.values.messages]}
    )
    return {"checkpoint": config["configurable"]}


@router.get("/{thread_id}/state/{checkpoint_id}")
async def get_state_at(thread_id: str, checkpoint_id: str, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """The thread's state at one checkpoint."""
    row = await services.threads.get(principal, thread_id)
    return snapshot_body(await graph_of(services, row).aget_state(thread_config(thread_id, checkpoint_id)))


@router.post("/{thread_id}/state/checkpoint")
async def post_state_at(thread_id: str, body: CheckpointQuery, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """The thread's state at the checkpoint named in the body."""
    row = await services.threads.get(principal, thread_id)
    checkpoint_id = body.checkpoint.get("checkpoint_id")
    return snapshot_body(await graph_of(services, row).aget_state(thread_config(thread_id, checkpoint_id)))


async def _history(services: Services, row: dict[str, Any], query: HistoryQuery) -> list[dict[str, Any]]:
    thread_id = str(row["thread_id"])
    before = query.before.get("checkpoint_id") if isinstance(query.before, dict) else query.before
    states = []
    async for snapshot in graph_of(services, row).aget_state_history(
        thread_config(thread_id), limit=query.limit, before=thread_config(thread_id, before) if before else None
    ):
        states.append(snapshot_body(snapshot))
    return states


@router.post("/{thread_id}/history")
async def post_history(thread_id: str, body: HistoryQuery, principal: CurrentPrincipal, services: ServicesDep) -> list[dict[str, Any]]:
    """Past states of the thread, newest first."""
    return await _history(services, await services.threads.get(principal, thread_id), body)


@router.get("/{thread_id}/history")
async def get_history(thread_id: str, principal: CurrentPrincipal, services: ServicesDep, limit: PageLimit = 10) -> list[dict[str, Any]]:
    """Past states of the thread, newest first."""
    return await _history(services, await services.threads.get(principal, thread_id), HistoryQuery(limit=limit))
