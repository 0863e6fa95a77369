"""``/assistants``: the tenant's assistants and the system assistants of the served graphs.

Listing and reading are for every user of the tenant; creating, changing and deleting are for the
OpenFGA ``assistant_admin`` of the tenant. Another tenant's assistants answer 404.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from mandate.runtime.assistants import Assistant, AssistantStore, settable_schema
from mandate.api.deps import CurrentPrincipal, Runs, ServicesDep
from mandate.runtime.errors import UnsupportedOptionError
from mandate.api.schemas import (
    AssistantCount,
    AssistantCreate,
    AssistantLatest,
    AssistantPatch,
    AssistantPublic,
    AssistantSearch,
    AssistantSelection,
    AssistantVersionsSearch,
    GraphPublic,
    GraphSchemas,
    SubgraphSchemas,
)

__all__ = ["router"]

router = APIRouter(prefix="/assistants", tags=["assistants"])


def _store(runs: Runs) -> AssistantStore:
    return runs.assistants


Store = Annotated[AssistantStore, Depends(_store)]


def _public(assistant: Assistant, select: list[str] | None = None) -> dict[str, Any]:
    body = AssistantPublic(**assistant.public()).model_dump(mode="json")
    return {k: v for k, v in body.items() if k in select} if select else body


@router.post("", response_model=AssistantPublic)
async def create_assistant(body: AssistantCreate, principal: CurrentPrincipal, store: Store) -> dict[str, Any]:
    """Create an assistant in the caller's tenant (assistant admins only)."""
    assistant = await store.create(
        principal,
        assistant_id=body.assistant_id,
        graph_id=body.graph_id,
        name=body.name,
        description=body.description,
        config=body.config,
        context=body.context,
        metadata=body.metadata,
        if_exists=body.if_exists,
    )
    return _public(assistant)


@router.post("/search", response_model=list[AssistantSelection], response_model_exclude_unset=True)
async def search_assistants(request: Request, response: Response, principal: CurrentPrincipal, store: Store) -> list[dict[str, Any]]:
    """The tenant's and the system assistants matching the filter (Studio posts its JSON as ``text/plain``).

    Paging headers as the reference server sends them: ``X-Pagination-Total`` and, when more
    follow, ``X-Pagination-Next`` (the next offset).
    """
    raw = await request.body()
    try:
        query = AssistantSearch.model_validate(json.loads(raw) if raw.strip() else {})
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    except ValueError:
        raise RequestValidationError([{"loc": ("body",), "msg": "The body is not JSON.", "type": "json_invalid"}]) from None
    assistants, more = await store.search(
        principal.tenant,
        graph_id=query.graph_id,
        name=query.name,
        metadata=query.metadata,
        limit=query.limit,
        offset=query.offset,
        sort_by=query.sort_by,
        sort_order=query.sort_order,
    )
    following = query.offset + len(assistants)
    response.headers["X-Pagination-Total"] = str(following + 1 if more else following)
    if more:
        response.headers["X-Pagination-Next"] = str(following)
    return [_public(a, list(query.select) if query.select else None) for a in assistants]


@router.post("/count")
async def count_assistants(body: AssistantCount, principal: CurrentPrincipal, store: Store) -> int:
    """How many assistants the search would find."""
    return await store.count(principal.tenant, graph_id=body.graph_id, name=body.name, metadata=body.metadata)


@router.get("/{assistant_id}", response_model=AssistantPublic)
async def get_assistant(assistant_id: str, principal: CurrentPrincipal, store: Store) -> dict[str, Any]:
    """One assistant of the caller's tenant (or a system assistant)."""
    return _public(await store.get(principal.tenant, assistant_id))


@router.patch("/{assistant_id}", response_model=AssistantPublic)
async def patch_assistant(assistant_id: str, body: AssistantPatch, principal: CurrentPrincipal, store: Store) -> dict[str, Any]:
    """A new version of the assistant (assistant admins only; system assistants are read-only)."""
    assistant = await store.update(
        principal,
        assistant_id,
        graph_id=body.graph_id,
        name=body.name,
        description=body.description,
        config=body.config,
        context=body.context,
        metadata=body.metadata,
    )
    return _public(assistant)


@router.delete("/{assistant_id}", status_code=204)
async def delete_assistant(
    assistant_id: str, principal: CurrentPrincipal, store: Store, delete_threads: bool = False
) -> Response:
    """Delete the assistant and its versions; threads that ran it continue on the graph's system assistant."""
    if delete_threads:
        raise UnsupportedOptionError(
            "delete_threads is not offered: threads belong to the users who own them, not to the assistant's admin."
        )
    await store.delete(principal, assistant_id)
    return Response(status_code=204)


@router.post("/{assistant_id}/versions", response_model=list[AssistantPublic])
async def list_versions(
    assistant_id: str, principal: CurrentPrincipal, store: Store, body: AssistantVersionsSearch | None = None
) -> list[dict[str, Any]]:
    """The assistant's versions, newest first."""
    query = body or AssistantVersionsSearch()
    versions = await store.versions(
        principal.tenant, assistant_id, metadata=query.metadata, limit=query.limit, offset=query.offset
    )
    return [_public(v) for v in versions]


@router.post("/{assistant_id}/latest", response_model=AssistantPublic)
async def set_latest_version(
    assistant_id: str,
    principal: CurrentPrincipal,
    store: Store,
    body: Annotated[AssistantLatest | None, Body()] = None,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """Make one version current (the SDK sends ``version`` in the body, the reference document as a query)."""
    chosen = body.version if body is not None else version
    if chosen is None:
        raise RequestValidationError([{"loc": ("body", "version"), "msg": "Name the version to make current.", "type": "missing"}])
    return _public(await store.set_latest(principal, assistant_id, chosen))


@router.get("/{assistant_id}/graph", response_model=GraphPublic, response_model_exclude_unset=True)
async def get_graph(assistant_id: str, principal: CurrentPrincipal, services: ServicesDep, store: Store, xray: bool | int = False) -> dict[str, Any]:
    """The graph's nodes and edges (``xray`` expands subgraphs)."""
    assistant = await store.get(principal.tenant, assistant_id)
    return services.graphs[assistant.graph_id].get_graph(xray=xray).to_json()


@router.get("/{assistant_id}/schemas", response_model=GraphSchemas)
async def get_schemas(assistant_id: str, principal: CurrentPrincipal, services: ServicesDep, store: Store) -> dict[str, Any]:
    """JSON schemas of the graph's input, output and state, and of what an assistant may configure.

    ``config_schema`` and ``context_schema`` are the *settable* schemas: the runtime context is
    Mandate's (caller, grants, gates), so the built-in graphs expose no settable field.
    """
    assistant = await store.get(principal.tenant, assistant_id)
    graph = services.graphs[assistant.graph_id]
    config_schema, context_schema = settable_schema(graph)
    return {
        "graph_id": assistant.graph_id,
        "input_schema": graph.get_input_jsonschema(),
        "output_schema": graph.get_output_jsonschema(),
        "state_schema": graph.get_output_jsonschema(),
        "config_schema": config_schema,
        "context_schema": context_schema,
    }


def _subgraphs(services: ServicesDep, graph_id: str, namespace: str | None, recurse: bool) -> dict[str, Any]:
    graph = services.graphs[graph_id]
    return {
        name: {"input_schema": sub.get_input_jsonschema(), "output_schema": sub.get_output_jsonschema(), "state_schema": sub.get_output_jsonschema()}
        for name, sub in graph.get_subgraphs(namespace=namespace, recurse=recurse)
    }


@router.get("/{assistant_id}/subgraphs", response_model=dict[str, SubgraphSchemas])
async def get_subgraphs(
    assistant_id: str, principal: CurrentPrincipal, services: ServicesDep, store: Store, recurse: bool = False
) -> dict[str, Any]:
    """Schemas of the graph's subgraphs, by namespace."""
    assistant = await store.get(principal.tenant, assistant_id)
    return _subgraphs(services, assistant.graph_id, None, recurse)


@router.get("/{assistant_id}/subgraphs/{namespace}", response_model=dict[str, SubgraphSchemas])
async def get_subgraph(
    assistant_id: str, namespace: str, principal: CurrentPrincipal, services: ServicesDep, store: Store, recurse: bool = False
) -> dict[str, Any]:
    """Schemas of the subgraphs under one namespace."""
    assistant = await store.get(principal.tenant, assistant_id)
    return _subgraphs(services, assistant.graph_id, namespace, recurse)
