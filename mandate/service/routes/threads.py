"""``/threads``: create, read, search, delete, state, and runs that wait for their result."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.encoders import jsonable_encoder

from mandate.service.deps import BearerToken, CurrentPrincipal, ServicesDep
from mandate.service.errors import ThreadExistsError
from mandate.service.runs import run_and_wait, snapshot_body
from mandate.service.schemas import RunCreate, ThreadCreate, ThreadSearch

__all__ = ["router"]

router = APIRouter(prefix="/threads", tags=["threads"])


def _thread_body(row: dict[str, Any], values: dict[str, Any] | None = None) -> dict[str, Any]:
    return jsonable_encoder(
        {
            "thread_id": str(row["thread_id"]),
            "status": row["status"],
            "metadata": row["metadata"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "values": values or {},
        }
    )


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
    return _thread_body(row)


@router.post("/search")
async def search_threads(body: ThreadSearch, principal: CurrentPrincipal, services: ServicesDep) -> list[dict[str, Any]]:
    """The caller's threads in their tenant, newest first."""
    rows = await services.threads.search(
        principal, status=body.status, metadata=body.metadata, limit=body.limit, offset=body.offset
    )
    return [_thread_body(row) for row in rows]


@router.get("/{thread_id}")
async def get_thread(thread_id: str, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """One of the caller's threads, with its current values."""
    row = await services.threads.get(principal, thread_id)
    snapshot = await services.graph.aget_state({"configurable": {"thread_id": thread_id}})
    return _thread_body(row, jsonable_encoder(snapshot.values))


@router.delete("/{thread_id}", status_code=204)
async def delete_thread(thread_id: str, principal: CurrentPrincipal, services: ServicesDep) -> Response:
    """Delete the caller's thread and its checkpoints."""
    await services.threads.delete(principal, thread_id)
    await services.graph.checkpointer.adelete_thread(thread_id)  # type: ignore[union-attr]
    return Response(status_code=204)


@router.get("/{thread_id}/state")
async def get_state(thread_id: str, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """The thread's current state: values, next nodes, pending interrupts."""
    await services.threads.get(principal, thread_id)
    return snapshot_body(await services.graph.aget_state({"configurable": {"thread_id": thread_id}}))


@router.post("/{thread_id}/runs/wait")
async def run_wait(
    thread_id: str, body: RunCreate, principal: CurrentPrincipal, token: BearerToken, services: ServicesDep
) -> dict[str, Any]:
    """Start a run (``input``) or resume one (``command.resume``) and wait for it to end or pause."""
    await services.threads.get(principal, thread_id)
    return await run_and_wait(services, thread_id=thread_id, body=body, caller=principal, token=token)
