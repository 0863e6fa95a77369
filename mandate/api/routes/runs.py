"""Runs on threads (``/threads/{id}/runs…``) and stateless runs (``/runs``, ``/runs/wait``, ``/runs/stream``, ``/runs/batch``).

Every run is queued and executed by a worker of any replica; these routes create runs and follow
them through their event log, so any replica serves any of them. Answers carry the reference
server's ``Content-Location`` (the run) and, for waits and streams, ``Location`` (where to rejoin
it); streamed events carry their ``id``, so a client reconnects with ``Last-Event-ID``. A stateless
run's thread is the caller's, so its locations are the thread's: addressable by its owner until the
run ends and the thread is deleted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Body, Header, Query, Request, Response
from sse_starlette.sse import EventSourceResponse

from mandate.auth import Principal
from mandate.errors import AppError
from mandate.api.deps import BearerToken, CurrentPrincipal, Runs, ServicesDep
from mandate.runtime.errors import ThreadNotFoundError, UnsupportedOptionError
from mandate.api.limits import PageLimit, PageOffset
from mandate.runtime.run_events import StoredEvent
from mandate.runtime.runs import RunManager
from mandate.runtime.services import Services
from mandate.api.schemas import RunCreate, RunPublic, RunsCancel, RunStatus, RunValues
from mandate.runtime.run_request import CancelAction, StreamMode

__all__ = ["router"]

router = APIRouter(tags=["runs"])
_log = logging.getLogger(__name__)
MAX_BATCH = 10
"""Most stateless runs one ``/runs/batch`` may start."""
STREAM_MODES: tuple[str, ...] = get_args(StreamMode)
SSE_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: one per stream mode's chunk (``event`` the mode, ``data`` JSON, ``id`` "
        "its place in the run's log), an ``error`` event if the run fails, then ``end``.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
"""How the OpenAPI document describes a streamed answer (not JSON: no response model applies)."""


async def _owned_thread(services: Services, principal: Principal, thread_id: str, body: RunCreate) -> None:
    """The caller must own the thread; ``if_not_exists="create"`` creates it for them."""
    try:
        await services.threads.get(principal, thread_id)
    except ThreadNotFoundError:
        if body.if_not_exists != "create":
            raise
        await services.threads.create(principal, thread_id=thread_id, metadata={})


def _locations(run: dict[str, Any], rejoin: str | None) -> dict[str, str]:
    """The run's ``Content-Location`` and, for a wait or a stream, the ``Location`` to rejoin it."""
    run_path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
    headers = {"Content-Location": run_path}
    if rejoin:
        headers["Location"] = f"{run_path}/{rejoin}"
    return headers


async def _as_sse(run_id: str, events: AsyncIterator[StoredEvent]) -> AsyncIterator[dict[str, str]]:
    try:
        async for event in events:
            sent = {"event": event.event, "data": json.dumps(event.data, default=str)}
            if event.seq:
                sent["id"] = str(event.seq)
            yield sent
    except AppError as exc:  # after the stream started, an error is an event, never a trace
        yield {"event": "error", "data": json.dumps({"error": exc.code, "message": exc.message})}
    except Exception as exc:  # noqa: BLE001  (the same for a failure we did not foresee)
        _log.error("run %s failed while streaming: %s", run_id, type(exc).__name__)
        yield {"event": "error", "data": json.dumps({"error": "internal_error", "message": "Internal error."})}


def _sse(runs: RunManager, run: dict[str, Any], body: RunCreate) -> EventSourceResponse:
    headers = {**_locations(run, "stream"), "Cache-Control": "no-store"}
    return EventSourceResponse(_as_sse(run["run_id"], runs.stream(run, on_disconnect=body.on_disconnect)), headers=headers)


@router.post("/threads/{thread_id}/runs/wait", response_model=RunValues, response_model_exclude_unset=True)
async def run_wait(
    thread_id: str, body: RunCreate, request: Request, response: Response, principal: CurrentPrincipal,
    token: BearerToken, services: ServicesDep, runs: Runs,
) -> dict[str, Any]:
    """Start a run (``input``), resume one (``command.resume``) or continue one (neither); wait for it."""
    await _owned_thread(services, principal, thread_id, body)
    run = await runs.create(thread_id=thread_id, body=body, caller=principal, token=token)
    response.headers.update(_locations(run, "join"))
    return await runs.wait(run, on_disconnect=body.on_disconnect, disconnected=request.is_disconnected)


@router.post("/threads/{thread_id}/runs/stream", response_class=EventSourceResponse, responses=SSE_ANSWER)
async def run_stream(
    thread_id: str, body: RunCreate, principal: CurrentPrincipal, token: BearerToken, services: ServicesDep, runs: Runs
) -> EventSourceResponse:
    """Like ``/runs/wait``, streamed as server-sent events in the requested stream modes."""
    await _owned_thread(services, principal, thread_id, body)
    run = await runs.create(thread_id=thread_id, body=body, caller=principal, token=token)
    return _sse(runs, run, body)


@router.post("/threads/{thread_id}/runs", response_model=RunPublic)
async def run_background(
    thread_id: str, body: RunCreate, response: Response, principal: CurrentPrincipal, token: BearerToken,
    services: ServicesDep, runs: Runs,
) -> dict[str, Any]:
    """Queue a run; poll it, join it or cancel it (from any replica)."""
    await _owned_thread(services, principal, thread_id, body)
    run = await runs.create(thread_id=thread_id, body=body, caller=principal, token=token)
    response.headers.update(_locations(run, None))
    return run


@router.get("/threads/{thread_id}/runs", response_model=list[RunPublic])
async def list_runs(
    thread_id: str, principal: CurrentPrincipal, services: ServicesDep, runs: Runs,
    limit: PageLimit = 10, offset: PageOffset = 0, status: RunStatus | None = None,
) -> list[dict[str, Any]]:
    """Runs of one of the caller's threads, newest first."""
    await services.threads.get(principal, thread_id)
    return await runs.list(thread_id, limit=limit, offset=offset, status=status)


@router.get("/threads/{thread_id}/runs/{run_id}", response_model=RunPublic)
async def get_run(thread_id: str, run_id: str, principal: CurrentPrincipal, services: ServicesDep, runs: Runs) -> dict[str, Any]:
    """One run."""
    await services.threads.get(principal, thread_id)
    return await runs.get(thread_id, run_id)


@router.delete("/threads/{thread_id}/runs/{run_id}", status_code=204)
async def delete_run(thread_id: str, run_id: str, principal: CurrentPrincipal, services: ServicesDep, runs: Runs) -> Response:
    """Delete a finished run's record; the thread and its checkpoints stay."""
    await services.threads.get(principal, thread_id)
    await runs.delete(thread_id, run_id)
    return Response(status_code=204)


@router.get("/threads/{thread_id}/runs/{run_id}/join", response_model=RunValues, response_model_exclude_unset=True)
async def join_run(thread_id: str, run_id: str, principal: CurrentPrincipal, services: ServicesDep, runs: Runs) -> dict[str, Any]:
    """Wait for a run; the thread's values."""
    await services.threads.get(principal, thread_id)
    return await runs.join(thread_id, run_id)


def _last_event_id(value: str | None) -> int | None:
    """The ``Last-Event-ID`` of a reconnect: a run event's ``id`` (its place in the run's log)."""
    if value is None or not value.strip():
        return None
    if not value.strip().isdigit() or len(value.strip()) > 9:
        raise UnsupportedOptionError("Last-Event-ID must be the id of an event of this run's stream.")
    return int(value.strip())


@router.get("/threads/{thread_id}/runs/{run_id}/stream", response_class=EventSourceResponse, responses=SSE_ANSWER)
async def join_run_stream(
    thread_id: str, run_id: str, principal: CurrentPrincipal, services: ServicesDep, runs: Runs,
    stream_mode: Annotated[list[str] | None, Query(max_length=len(STREAM_MODES))] = None,
    cancel_on_disconnect: bool = False,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> EventSourceResponse:
    """Rejoin a run's stream: after ``Last-Event-ID`` (a reconnect) or from now on, then ``end``."""
    asked = [m for m in stream_mode or () if m]  # the SDK sends an empty value for "every mode"
    unknown = sorted(set(asked) - set(STREAM_MODES))
    if unknown:
        raise UnsupportedOptionError(f"stream_mode {unknown[0][:32]!r} is not a stream mode.")
    after = _last_event_id(last_event_id)
    await services.threads.get(principal, thread_id)
    await runs.get(thread_id, run_id)
    modes = {"messages" if m == "messages-tuple" else m for m in asked} or None
    events = runs.join_stream(thread_id, run_id, modes=modes, last_event_id=after, cancel_on_disconnect=cancel_on_disconnect)
    return EventSourceResponse(_as_sse(run_id, events), headers={"Cache-Control": "no-store"})


@router.post("/threads/{thread_id}/runs/{run_id}/cancel", response_model=RunPublic)
async def cancel_run(
    thread_id: str, run_id: str, principal: CurrentPrincipal, services: ServicesDep, runs: Runs,
    action: CancelAction = "interrupt", wait: bool = False,  # noqa: ARG001  (cancelling always waits until the run stopped)
) -> dict[str, Any]:
    """Cancel a run on whichever replica executes it; ``interrupt`` keeps its checkpoints, ``rollback`` deletes them."""
    await services.threads.get(principal, thread_id)
    return await runs.cancel(thread_id, run_id, action=action)


@router.post("/runs/cancel", status_code=204)
async def cancel_runs(
    body: RunsCancel, principal: CurrentPrincipal, services: ServicesDep, runs: Runs, action: CancelAction = "interrupt"
) -> Response:
    """Cancel the caller's runs, by thread and ids or by status (others' runs are never touched).

    A thread named in the body must be the caller's (404 ``thread_not_found`` otherwise); run ids
    that are not theirs are skipped.
    """
    if body.thread_id is not None:
        await services.threads.get(principal, str(body.thread_id))
    await runs.cancel_many(principal, thread_id=body.thread_id, run_ids=body.run_ids, status=body.status, action=action)
    return Response(status_code=204)


async def _stateless_run(
    services: Services, runs: RunManager, principal: Principal, token: str, body: RunCreate
) -> dict[str, Any]:
    """A run on a new temporary thread of the caller's; the thread goes if the run is refused."""
    row = await services.threads.create(principal, thread_id=None, metadata={"stateless": True})
    thread_id = str(row["thread_id"])
    try:
        return await runs.create(thread_id=thread_id, body=body, caller=principal, token=token, temporary=True)
    except BaseException:
        await services.threads.delete(principal, thread_id)
        raise


@router.post("/runs/wait", response_model=RunValues, response_model_exclude_unset=True)
async def stateless_wait(
    body: RunCreate, request: Request, response: Response, principal: CurrentPrincipal, token: BearerToken,
    services: ServicesDep, runs: Runs,
) -> dict[str, Any]:
    """A run on a temporary thread, deleted when the run ends (unless it paused)."""
    run = await _stateless_run(services, runs, principal, token, body)
    response.headers.update(_locations(run, "join"))
    return await runs.wait(run, on_disconnect=body.on_disconnect, disconnected=request.is_disconnected)


@router.post("/runs/stream", response_class=EventSourceResponse, responses=SSE_ANSWER)
async def stateless_stream(
    body: RunCreate, principal: CurrentPrincipal, token: BearerToken, services: ServicesDep, runs: Runs
) -> EventSourceResponse:
    """A streamed run on a temporary thread, deleted when the run ends (unless it paused)."""
    run = await _stateless_run(services, runs, principal, token, body)
    return _sse(runs, run, body)


@router.post("/runs", response_model=RunPublic)
async def stateless_background(
    body: RunCreate, response: Response, principal: CurrentPrincipal, token: BearerToken, services: ServicesDep, runs: Runs
) -> dict[str, Any]:
    """A background run on a temporary thread, deleted when the run ends (unless it paused)."""
    run = await _stateless_run(services, runs, principal, token, body)
    response.headers.update(_locations(run, None))
    return run


@router.post("/runs/batch", response_model=list[RunPublic])
async def stateless_batch(
    bodies: Annotated[list[RunCreate], Body(min_length=1, max_length=MAX_BATCH)],
    principal: CurrentPrincipal, token: BearerToken, services: ServicesDep, runs: Runs,
) -> list[dict[str, Any]]:
    """Several background runs, each on its own temporary thread (at most ``MAX_BATCH``); all or none."""
    created: list[dict[str, Any]] = []
    try:
        for body in bodies:
            created.append(await _stateless_run(services, runs, principal, token, body))
    except BaseException:
        for run in created:  # all or nothing: the runs already queued are rolled back with their threads
            await runs.cancel(run["thread_id"], run["run_id"], action="rollback")
            await services.threads.delete(principal, run["thread_id"])
            await services.checkpointer.adelete_thread(run["thread_id"])
        raise
    return created
