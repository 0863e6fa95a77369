"""``/assistants``: the compiled graphs clients (the SDK, LangGraph Studio) can run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from mandate.graphs import ASSISTANT_ID
from mandate.service.deps import CurrentPrincipal, ServicesDep
from mandate.service.errors import AssistantNotFoundError, InvalidRunError
from mandate.service.runs import assistant_uuid

__all__ = ["router"]

router = APIRouter(prefix="/assistants", tags=["assistants"])
_CREATED = datetime(2026, 1, 1, tzinfo=UTC).isoformat()


def _assistant() -> dict[str, Any]:
    return {
        "assistant_id": assistant_uuid(),
        "graph_id": ASSISTANT_ID,
        "name": ASSISTANT_ID,
        "description": "Plans, retrieves authorized context, asks for step-up and consent, calls tools with delegated tokens.",
        "config": {},
        "context": {},
        "metadata": {"created_by": "system"},
        "version": 1,
        "created_at": _CREATED,
        "updated_at": _CREATED,
    }


def _check(assistant_id: str) -> None:
    if assistant_id not in (ASSISTANT_ID, assistant_uuid()):
        raise AssistantNotFoundError(f"Assistant {assistant_id!r} not found.")


@router.post("/search")
async def search_assistants(request: Request, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    """All assistants matching the filter (Studio posts its JSON body as ``text/plain``)."""
    raw = await request.body()
    try:
        query = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise InvalidRunError("The search body is not JSON.") from exc
    graph_id = query.get("graph_id") if isinstance(query, dict) else None
    return [_assistant()] if graph_id in (None, ASSISTANT_ID) else []


@router.get("/{assistant_id}")
async def get_assistant(assistant_id: str, principal: CurrentPrincipal) -> dict[str, Any]:
    """One assistant."""
    _check(assistant_id)
    return _assistant()


@router.get("/{assistant_id}/graph")
async def get_graph(assistant_id: str, principal: CurrentPrincipal, services: ServicesDep, xray: bool | int = False) -> dict[str, Any]:
    """The graph's nodes and edges (``xray`` expands subgraphs)."""
    _check(assistant_id)
    return services.graph.get_graph(xray=xray).to_json()


@router.get("/{assistant_id}/schemas")
async def get_schemas(assistant_id: str, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """JSON schemas of the graph's input, output and state (the runtime context is server-side only)."""
    _check(assistant_id)
    graph = services.graph
    return {
        "graph_id": ASSISTANT_ID,
        "input_schema": graph.get_input_jsonschema(),
        "output_schema": graph.get_output_jsonschema(),
        "state_schema": graph.get_output_jsonschema(),
        "config_schema": None,
        "context_schema": None,
    }


@router.get("/{assistant_id}/subgraphs")
async def get_subgraphs(assistant_id: str, principal: CurrentPrincipal, services: ServicesDep, recurse: bool = False) -> dict[str, Any]:
    """Schemas of the graph's subgraphs, by namespace."""
    _check(assistant_id)
    return {
        namespace: {"graph_id": namespace, "input_schema": sub.get_input_jsonschema(), "output_schema": sub.get_output_jsonschema()}
        for namespace, sub in services.graph.get_subgraphs(recurse=recurse)
    }
