"""``/assistants``: the compiled graphs clients (the SDK, LangGraph Studio) can run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from mandate.graphs import ASSISTANT_ID, SUPERVISOR_ID
from mandate.service.deps import CurrentPrincipal, ServicesDep
from mandate.service.errors import InvalidRunError
from mandate.service.runs import assistant_uuid, resolve_assistant

__all__ = ["router"]

router = APIRouter(prefix="/assistants", tags=["assistants"])
_CREATED = datetime(2026, 1, 1, tzinfo=UTC).isoformat()


DESCRIPTIONS = {
    ASSISTANT_ID: "Plans, retrieves authorized context, asks for step-up and consent, calls tools with delegated tokens.",
    SUPERVISOR_ID: "Routes each request to a research agent or an operations agent, each with its own identity and grants.",
}


def _assistant(graph_id: str) -> dict[str, Any]:
    return {
        "assistant_id": assistant_uuid(graph_id),
        "graph_id": graph_id,
        "name": graph_id,
        "description": DESCRIPTIONS.get(graph_id),
        "config": {},
        "context": {},
        "metadata": {"created_by": "system"},
        "version": 1,
        "created_at": _CREATED,
        "updated_at": _CREATED,
    }


@router.post("/search")
async def search_assistants(request: Request, principal: CurrentPrincipal, services: ServicesDep) -> list[dict[str, Any]]:
    """All assistants matching the filter (Studio posts its JSON body as ``text/plain``)."""
    raw = await request.body()
    try:
        query = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise InvalidRunError("The search body is not JSON.") from exc
    wanted = query.get("graph_id") if isinstance(query, dict) else None
    return [_assistant(graph_id) for graph_id in services.graphs if wanted in (None, graph_id)]


@router.get("/{assistant_id}")
async def get_assistant(assistant_id: str, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """One assistant."""
    return _assistant(resolve_assistant(services, assistant_id))


@router.get("/{assistant_id}/graph")
async def get_graph(assistant_id: str, principal: CurrentPrincipal, services: ServicesDep, xray: bool | int = False) -> dict[str, Any]:
    """The graph's nodes and edges (``xray`` expands subgraphs)."""
    return services.graphs[resolve_assistant(services, assistant_id)].get_graph(xray=xray).to_json()


@router.get("/{assistant_id}/schemas")
async def get_schemas(assistant_id: str, principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """JSON schemas of the graph's input, output and state (the runtime context is server-side only)."""
    graph_id = resolve_assistant(services, assistant_id)
    graph = services.graphs[graph_id]
    return {
        "graph_id": graph_id,
        "input_schema": graph.get_input_jsonschema(),
        "output_schema": graph.get_output_jsonschema(),
        "state_schema": graph.get_output_jsonschema(),
        "config_schema": None,
        "context_schema": None,
    }


@router.get("/{assistant_id}/subgraphs")
async def get_subgraphs(assistant_id: str, principal: CurrentPrincipal, services: ServicesDep, recurse: bool = False) -> dict[str, Any]:
    """Schemas of the graph's subgraphs, by namespace."""
    graph = services.graphs[resolve_assistant(services, assistant_id)]
    return {
        namespace: {"graph_id": namespace, "input_schema": sub.get_input_jsonschema(), "output_schema": sub.get_output_jsonschema()}
        for namespace, sub in graph.get_subgraphs(recurse=recurse)
    }
