"""Running the graph for one HTTP call: the thread is claimed, the caller's context built, the
root span opened, and the thread's status recorded however the run ends."""

from __future__ import annotations

import time
from typing import Any

from fastapi.encoders import jsonable_encoder
from langchain_core.messages import HumanMessage
from langgraph.types import Command, StateSnapshot

from mandate.auth import Principal
from mandate.graphs import ASSISTANT_ID, GraphContext
from mandate.service.errors import (
    AssistantNotFoundError,
    InvalidRunError,
    NotInterruptedError,
    ThreadInterruptedError,
)
from mandate.service.runtime import Services
from mandate.service.schemas import RunCreate

__all__ = ["run_and_wait", "snapshot_body"]

WAITS_FOR_OTHERS = ("approval",)
"""Interrupt kinds someone other than the requester answers: the requester's token goes to the vault."""


async def _after_run(
    services: Services, *, thread_id: str, snapshot: StateSnapshot, caller: Principal, token: str
) -> None:
    """Mirror the pending interrupt into the approval queue; vault the requester's token if others decide."""
    requester = snapshot.values.get("principal")
    if not requester:
        return
    await services.approvals.sync(thread_id=thread_id, requester=requester, snapshot=snapshot)
    kinds = {i.value.get("kind") for i in snapshot.interrupts if isinstance(i.value, dict)}
    if kinds & set(WAITS_FOR_OTHERS) and caller.same_subject(requester):
        await services.vault.put(
            issuer=caller.issuer, subject=caller.subject, thread_id=thread_id, token=token, expires_at=caller.expires_at
        )


def _config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def _interrupts(snapshot: StateSnapshot) -> list[dict[str, Any]]:
    return [{"value": i.value, "id": i.id} for i in snapshot.interrupts]


def snapshot_body(snapshot: StateSnapshot) -> dict[str, Any]:
    """A thread's state in the LangGraph server's shape."""
    return jsonable_encoder(
        {
            "values": snapshot.values,
            "next": list(snapshot.next),
            "tasks": [
                {"id": t.id, "name": t.name, "interrupts": [{"value": i.value, "id": i.id} for i in t.interrupts]}
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
        # Neither: continue a run that stopped between nodes (a crash); None resumes the checkpoint.
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


async def run_and_wait(
    services: Services, *, thread_id: str, body: RunCreate, caller: Principal, token: str
) -> dict[str, Any]:
    """Run (or resume) the graph on an owned thread until it ends or pauses; returns its values.

    Raises:
        AppError: A subclass, mapped to HTTP by ``service.errors``.
    """
    if body.assistant_id != ASSISTANT_ID:
        raise AssistantNotFoundError(f"Assistant {body.assistant_id!r} not found.")
    graph = services.graph
    config = _config(thread_id)
    graph_input = _graph_input(await graph.aget_state(config), body, caller)
    context = GraphContext(
        caller=caller,
        subject_token=token,
        thread_id=thread_id,
        authz=services.authz,
        retriever=services.retriever,
        tools=services.tools,
        broker=services.broker,
        vault=services.vault,
        verifier=services.verifier,
        downstream=services.http,
        audit=services.audit,
        planner=services.planner,
        responder=services.responder,
        pseudonymize=services.pseudonymize,
        tracer=services.tracer,
        clock=time.time,
    )
    await services.threads.claim(thread_id)
    status = "error"
    try:
        with services.tracer.start_as_current_span(f"invoke_agent {ASSISTANT_ID}") as span:
            span.set_attribute("gen_ai.operation.name", "invoke_agent")
            span.set_attribute("gen_ai.agent.id", ASSISTANT_ID)
            span.set_attribute("gen_ai.conversation.id", thread_id)
            span.set_attribute("mandate.caller", context.pseudonym(caller))
            span.set_attribute("mandate.resume", body.command is not None)
            await graph.ainvoke(graph_input, config, context=context)
        snapshot = await graph.aget_state(config)
        status = "interrupted" if snapshot.interrupts else "idle"
        await _after_run(services, thread_id=thread_id, snapshot=snapshot, caller=caller, token=token)
    finally:
        await services.threads.release(thread_id, status)
    result = jsonable_encoder(snapshot.values)
    if snapshot.interrupts:
        result["__interrupt__"] = _interrupts(snapshot)
    return result
