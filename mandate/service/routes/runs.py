"""Runs on threads (``/threads/{id}/runs…``) and stateless runs (``/runs/wait``, ``/runs/stream``)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from sse_starlette.sse import EventSourceResponse

from mandate.auth import Principal
from mandate.errors import AppError
from mandate.service.deps import BearerToken, CurrentPrincipal, Runs, ServicesDep
from mandate.service.errors import ThreadNotFoundError
from mandate.service.limits import PageLimit, PageOffset
from mandate.service.runs import RunManager
from mandate.service.runtime import Services
from mandate.service.schemas import RunCreate

__all__ = ["router"]

router = APIRouter(tags=["runs"])
_log = logging.getLogger(__name__)


async def _owned_thread(services: Services, principal: Principal, thread_id: str, body: RunCreate) -> None:
    """The caller must own the thread; ``if_not_exists="create"`` creates it for them."""
    try:
        await services.threads.get(principal, thread_id)
    except ThreadNotFoundError:
        if body.if_not_exists != "create":
            raise
        await services.threads.create(principal, thread_id=thread_id, metadata={})


def _sse(runs: RunManager, run: dict[str, Any], body: RunCreate, caller: Principal, token: str) -> EventSourceResponse:
    async def stream() -> AsyncIterator[dict[str, str]]:
        try:
            async for event in runs.events(run, body=body, caller=caller, token=token):
                yield {"event": event.event, "data": json.dumps(event.data, default=str)}
        except AppError as exc:  # after the stream started, an error is an event, never a trace
            yield {"event": "error", "data": json.dumps({"error": exc.code, "message": exc.message})}
        except Exception as exc:  # noqa: BLE001  (the same for a failure we did not foresee)
            _log.error("run %s failed while streaming: %s", run["run_id"], type(exc).__name__)
            yield {"event": "error", "data": json.dumps({"error": "internal_error", "message": "Internal error."})}

    location = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
    return EventSourceResponse(stream(), headers={"Content-Location": location, "Cache-Control": "no-store"})


@router.post("/threads/{thread_id}/runs/wait")
async def run_wait(
    thread_id: str, body: RunCreate, principal: CurrentPrincipal, token: BearerToken, services: ServicesDep, runs: Runs
) -> dict[str, Any]:
    """Start a run (``input``), resume one (``command.resume``) or continue one (neither); wait for it."""
    await _owned_thread(services, principal, thread_id, body)
    return await runs.run_and_wait(thread_id=thread_id, body=body, caller=principal, token=token)


@router.post("/threads/{thread_id}/runs/stream")
async def run_stream(
    thread_id: str, body: RunCreate, principal: CurrentPrincipal, token: BearerToken, services: ServicesDep, runs: Runs
) -> EventSourceResponse:
    """Like ``/runs/wait``, streamed as server-sent events in the requested stream modes."""
    await _owned_thread(services, principal, thread_id, body)
    run = await runs.create(thread_id=thread_id, body=body, caller=principal)
    return _sse(runs, run, body, principal, token)


@router.post("/threads/{thread_id}/runs")
async def run_background(
    thread_id: str, body: RunCreate, principal: CurrentPrincipal, token: BearerToken, services: ServicesDep, runs: Runs
) -> dict[str, Any]:
    """Start a run in the background; poll it, join it or cancel it."""
    await _owned_thread(services, principal, thread_id, body)
    run = await runs.create(thread_id=thread_id, body=body, caller=principal)
    runs.start(run, body=body, caller=principal, token=token)
    return run


@router.get("/threads/{thread_id}/runs")
async def list_runs(
    thread_id: str, principal: CurrentPrincipal, services: ServicesDep, runs: Runs, limit: PageLimit = 10, offset: PageOffset = 0
) -> list[dict[str, Any]]:
    """Runs of one of the caller's threads, newest first."""
    await services.threads.get(principal, thread_id)
    return await runs.list(thread_id, limit=limit, offset=offset)


@router.get("/threads/{thread_id}/runs/{run_id}")
async def get_run(thread_id: str, run_id: str, principal: CurrentPrincipal, services: ServicesDep, runs: Runs) -> dict[str, Any]:
    """One run."""
    await services.threads.get(principal, thread_id)
    return await runs.get(thread_id, run_id)


@router.get("/threads/{thread_id}/runs/{run_id}/join")
async def join_run(thread_id: str, run_id: str, principal: CurrentPrincipal, services: ServicesDep, runs: Runs) -> dict[str, Any]:
    """Wait for a background run; the thread's values."""
    await services.threads.get(principal, thread_id)
    return await runs.join(thread_id, run_id)


@router.post("/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(thread_id: str, run_id: str, principal: CurrentPrincipal, services: ServicesDep, runs: Runs) -> dict[str, Any]:
    """Cancel a background run; the thread can be continued from its last checkpoint."""
    await services.threads.get(principal, thread_id)
    return await runs.cancel(thread_id, run_id)


async def _stateless(services: Services, principal: Principal) -> str:
    row = await services.threads.create(principal, thread_id=None, metadata={"stateless": True})
    return str(row["thread_id"])


async def _drop(services: Services, principal: Principal, thread_id: str) -> None:
    await services.threads.delete(principal, thread_id)
    await services.checkpointer.adelete_thread(thread_id)


@router.post("/runs/wait")
async def stateless_wait(
    body: RunCreate, principal: CurrentPrincipal, token: BearerToken, services: ServicesDep, runs: Runs
) -> dict[str, Any]:
    """A run on a temporary thread, deleted when the run ends (unless it paused)."""
    thread_id = await _stateless(services, principal)
    values = await runs.run_and_wait(thread_id=thread_id, body=body, caller=principal, token=token)
    if "__interrupt__" not in values:
        await _drop(services, principal, thread_id)
    return values


@router.post("/runs/stream")
async def stateless_stream(
    body: RunCreate, principal: CurrentPrincipal, token: BearerToken, services: ServicesDep, runs: Runs
) -> EventSourceResponse:
    """A streamed run on a temporary thread (kept, like the thread of any run, for its owner)."""
    thread_id = await _stateless(services, principal)
    run = await runs.create(thread_id=thread_id, body=body, caller=principal)
    return _sse(runs, run, body, principal, token)
