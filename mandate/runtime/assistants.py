"""Assistants: a graph plus a vetted configuration, owned by one tenant; the built-in graphs are system assistants.

Who may create, change and delete a tenant's assistants is an OpenFGA decision (``assistant_admin``
of the tenant); every user of the tenant may list and run them; another tenant's assistants do not
exist for them (404). System assistants (one per served graph, id = :func:`assistant_uuid` of the
graph) are visible to every tenant and changed by none.

An assistant's ``config`` and ``context`` never reach a control. A key anywhere in them that names
one (the principal, grants, policies, tools, gates, the thread, a LangGraph internal) is refused with
``control_field_refused``; what remains must fit the graph's *settable* schema
(:func:`settable_schema`), or it is refused with ``invalid_assistant_config``. A run applies only
the vetted result (:meth:`Assistant.run_config`).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, get_type_hints

import jsonschema
from langgraph.graph.state import CompiledStateGraph
from psycopg import sql
from psycopg.types.json import Jsonb

from mandate._db import Pool
from mandate.auth import Authorizer, Principal, Relationship
from mandate.auth import vocabulary as fga
from mandate.contract.state import GraphContext, MandateState
from mandate.runtime import queries
from mandate.runtime.errors import (
    AssistantAdminRequiredError,
    AssistantExistsError,
    AssistantNotFoundError,
    AssistantQuotaError,
    AssistantReadOnlyError,
    AssistantVersionNotFoundError,
    ControlFieldRefusedError,
    GraphNotFoundError,
    InvalidAssistantConfigError,
)

__all__ = [
    "CONTROL_FIELDS",
    "MAX_ASSISTANTS_PER_TENANT",
    "MAX_VERSIONS",
    "Assistant",
    "AssistantStore",
    "assistant_uuid",
    "settable_schema",
    "vet_configuration",
]

MAX_ASSISTANTS_PER_TENANT: Final = 1_000
"""Most assistants one tenant keeps; creating another answers 429 ``assistant_quota_exceeded``."""
MAX_VERSIONS: Final = 1_000
"""Most versions one assistant keeps; another change answers 429 ``assistant_quota_exceeded``."""
MAX_RECURSION_LIMIT: Final = 100
"""The highest ``recursion_limit`` an assistant may set (LangGraph's default is 25)."""
SYSTEM_CREATED_AT: Final = datetime(2026, 1, 1, tzinfo=UTC)

CONTROL_FIELDS: Final = frozenset(
    {
        # Identity and credentials.
        "principal", "caller", "user", "user_id", "subject", "issuer", "tenant", "token", "subject_token",
        "access_token", "id_token", "refresh_token", "act", "actor", "authorization", "api_key",
        # Authorization, policy and the gates.
        "grants", "grant", "scopes", "roles", "groups", "policies", "policy", "tools", "gates", "gate",
        "approvals", "approval", "approver", "consent", "step_up", "acr", "amr", "ledger", "authz", "vault", "brokers",
        # Which thread, checkpoint and run a step belongs to.
        "thread_id", "checkpoint_id", "checkpoint_ns", "checkpoint_map", "checkpoint", "run_id", "assistant_id", "graph_id",
        "callbacks",
    }
    | {f.name for f in dataclasses.fields(GraphContext)}
    | set(get_type_hints(MandateState, include_extras=False))
)
"""Names that are Mandate's to set, never a client's: refused at any depth of an assistant's configuration.

The runtime context's fields and the graph state's keys are included by construction, so a new
control added there is refused here without a second list to keep in step.
"""


def assistant_uuid(graph_id: str) -> str:
    """The stable UUID of a system assistant (LangGraph clients address assistants by UUID or graph id)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mandate:assistant:{graph_id}"))


@dataclass(frozen=True, kw_only=True, slots=True)
class Assistant:
    """One assistant (one version of it) as stored; its configuration is already vetted."""

    assistant_id: str
    graph_id: str
    name: str
    description: str | None
    config: Mapping[str, Any]
    """Vetted: only ``tags``, ``recursion_limit`` and settable ``configurable`` keys."""
    context: Mapping[str, Any]
    """Vetted: only the graph's settable context fields."""
    metadata: Mapping[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
    system: bool
    """A built-in graph's assistant: shared by every tenant, changed by none."""

    def run_config(self) -> dict[str, Any]:
        """The part of a run's LangGraph config this assistant sets (the thread and controls are the run's)."""
        applied: dict[str, Any] = {}
        if self.config.get("tags"):
            applied["tags"] = list(self.config["tags"])
        if self.config.get("recursion_limit"):
            applied["recursion_limit"] = int(self.config["recursion_limit"])
        applied["configurable"] = dict(self.config.get("configurable") or {})
        return applied

    def public(self) -> dict[str, Any]:
        """The assistant in the LangGraph server's shape."""
        return {
            "assistant_id": self.assistant_id,
            "graph_id": self.graph_id,
            "name": self.name,
            "description": self.description,
            "config": dict(self.config),
            "context": dict(self.context),
            "metadata": dict(self.metadata),
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def settable_schema(graph: CompiledStateGraph) -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON schemas of what an assistant may set for ``graph``: its ``config`` and its ``context``.

    ``config`` takes ``tags``, a bounded ``recursion_limit`` and the ``configurable`` keys the graph
    declares (the built-in graphs declare none: their runtime context is Mandate's). ``context``
    takes the fields a graph's context type adds to :class:`~mandate.contract.GraphContext` (none for
    the built-in graphs).
    """
    context_type = graph.builder.context_schema
    own: dict[str, Any] = {}
    if dataclasses.is_dataclass(context_type) and isinstance(context_type, type) and issubclass(context_type, GraphContext):
        base = {f.name for f in dataclasses.fields(GraphContext)}
        own = {f.name: {} for f in dataclasses.fields(context_type) if f.name not in base and f.name not in CONTROL_FIELDS}
    context = {"type": "object", "properties": own, "additionalProperties": False}
    config = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 64}, "maxItems": 20},
            "recursion_limit": {"type": "integer", "minimum": 1, "maximum": MAX_RECURSION_LIMIT},
            "configurable": {"type": "object", "properties": {}, "additionalProperties": False},
        },
        "additionalProperties": False,
    }
    return config, context


def _controls_in(value: Any, path: str, depth: int = 0) -> str | None:
    """The path of the first key in ``value`` that names a control, if any."""
    if depth > 16:
        return path
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key)
            where = f"{path}.{name[:64]}"
            if name.lower() in CONTROL_FIELDS or name.startswith("__"):
                return where
            found = _controls_in(item, where, depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _controls_in(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
    return None


def _describe(error: jsonschema.ValidationError, where: str) -> str:
    """A message naming the field and the rule it broke, never echoing the rejected value."""
    path = where + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"{path}: the graph declares no such field (settable: {', '.join(allowed) or 'none'})."
    return f"{path}: must satisfy {error.validator} {error.validator_value!r}."


def vet_configuration(graph: CompiledStateGraph, *, config: Mapping[str, Any], context: Mapping[str, Any]) -> None:
    """Refuse a configuration that names a control or does not fit the graph's settable schema.

    Raises:
        ControlFieldRefusedError: A key (at any depth) names a control.
        InvalidAssistantConfigError: The rest does not fit :func:`settable_schema`.
    """
    for value, where in ((config, "config"), (context, "context")):
        control = _controls_in(value, where)
        if control:
            raise ControlFieldRefusedError(f"{control} is a control: Mandate sets it from verified identity and policy.")
    config_schema, context_schema = settable_schema(graph)
    for value, schema, where in ((config, config_schema, "config"), (context, context_schema, "context")):
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(dict(value)))
        if error is not None:
            raise InvalidAssistantConfigError(_describe(error, where))


def _assistant(row: Mapping[str, Any]) -> Assistant:
    return Assistant(
        assistant_id=str(row["assistant_id"]),
        graph_id=row["graph_id"],
        name=row["name"],
        description=row["description"],
        config=row["config"],
        context=row["context"],
        metadata=row["metadata"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        system=bool(row["system"]),
    )


_ORDER_COLUMNS = {
    "assistant_id": sql.SQL("assistant_id::text"),
    "created_at": sql.SQL("created_at"),
    "updated_at": sql.SQL("updated_at"),
    "name": sql.SQL("lower(name)"),
    "graph_id": sql.SQL("lower(graph_id)"),
}


class AssistantStore:
    """The tenant's assistants in Postgres plus the system assistants of the served graphs."""

    def __init__(
        self, *, pool: Pool, authz: Authorizer, graphs: Mapping[str, CompiledStateGraph], descriptions: Mapping[str, str]
    ) -> None:
        self._pool = pool
        self._authz = authz
        self._graphs = graphs
        self._descriptions = descriptions

    def system(self, graph_id: str) -> Assistant:
        """The system assistant of a served graph.

        Raises:
            GraphNotFoundError: The graph is not served here.
        """
        if graph_id not in self._graphs:
            raise GraphNotFoundError(f"Graph {graph_id[:64]!r} is not served here.")
        return Assistant(
            assistant_id=assistant_uuid(graph_id),
            graph_id=graph_id,
            name=graph_id,
            description=self._descriptions.get(graph_id),
            config={},
            context={},
            metadata={"created_by": "system"},
            version=1,
            created_at=SYSTEM_CREATED_AT,
            updated_at=SYSTEM_CREATED_AT,
            system=True,
        )

    def _system_by_id(self, assistant_id: str) -> Assistant | None:
        for graph_id in self._graphs:
            if assistant_id in (graph_id, assistant_uuid(graph_id)):
                return self.system(graph_id)
        return None

    async def get(self, tenant: str, assistant_id: str) -> Assistant:
        """The assistant ``assistant_id`` (a UUID, or a graph id for its system assistant) in ``tenant``.

        Raises:
            AssistantNotFoundError: No such assistant in the tenant (another tenant's included).
        """
        found = self._system_by_id(assistant_id)
        if found is not None:
            return found
        key = _uuid_or_none(assistant_id)
        if key is not None:
            async with self._pool.connection() as conn:
                row = await (await conn.execute(queries.SELECT_ASSISTANT, {"tenant": tenant, "assistant_id": key})).fetchone()
            if row is not None and row["graph_id"] in self._graphs:
                return _assistant(row)
        raise AssistantNotFoundError(f"Assistant {assistant_id[:64]!r} not found.")

    async def search(
        self,
        tenant: str,
        *,
        graph_id: str | None,
        name: str | None,
        metadata: Mapping[str, Any],
        limit: int,
        offset: int,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> tuple[list[Assistant], bool]:
        """A page of the tenant's and the system assistants, and whether more follow."""
        direction = sql.SQL("ASC" if sort_order == "asc" else "DESC")
        column = _ORDER_COLUMNS[sort_by or "created_at"]
        order = sql.SQL("{column} {direction}, assistant_id {direction}").format(column=column, direction=direction)
        query = sql.SQL(queries.SEARCH_ASSISTANTS).format(order=order)  # type: ignore[arg-type]
        params = {**self._filter(tenant, graph_id, name, metadata), "limit": limit + 1, "offset": offset}
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(query, params)).fetchall()
        return [_assistant(r) for r in rows[:limit]], len(rows) > limit

    async def count(self, tenant: str, *, graph_id: str | None, name: str | None, metadata: Mapping[str, Any]) -> int:
        """How many assistants :meth:`search` would list without paging."""
        async with self._pool.connection() as conn:
            row = await (await conn.execute(queries.COUNT_ASSISTANTS, self._filter(tenant, graph_id, name, metadata))).fetchone()
        return int(row["n"]) if row else 0

    def _filter(self, tenant: str, graph_id: str | None, name: str | None, metadata: Mapping[str, Any]) -> dict[str, Any]:
        graphs = list(self._graphs)
        return {
            "tenant": tenant,
            "graphs": graphs,
            "graph_id": graph_id,
            "name": name,
            "metadata": Jsonb(dict(metadata)),
            "system_ids": [uuid.UUID(assistant_uuid(g)) for g in graphs],
            "system_graphs": graphs,
            "system_descriptions": [self._descriptions.get(g) for g in graphs],
            "system_created_at": SYSTEM_CREATED_AT,
        }

    async def _require_admin(self, principal: Principal) -> None:
        question = Relationship(principal.user_id, fga.ASSISTANT_ADMIN, fga.tenant(principal.tenant))
        if not await self._authz.check(question, strong=True):
            raise AssistantAdminRequiredError("Only assistant admins of your tenant may create, change or delete assistants.")

    def _graph(self, graph_id: str) -> CompiledStateGraph:
        graph = self._graphs.get(graph_id)
        if graph is None:
            raise GraphNotFoundError(f"Graph {graph_id[:64]!r} is not served here.")
        return graph

    async def create(
        self,
        principal: Principal,
        *,
        assistant_id: uuid.UUID | None,
        graph_id: str,
        name: str,
        description: str | None,
        config: Mapping[str, Any],
        context: Mapping[str, Any],
        metadata: Mapping[str, Any],
        if_exists: str,
    ) -> Assistant:
        """Create an assistant in the caller's tenant (version 1).

        Raises:
            AssistantAdminRequiredError: OpenFGA does not make the caller ``assistant_admin``.
            GraphNotFoundError, ControlFieldRefusedError, InvalidAssistantConfigError: Refused configuration.
            AssistantExistsError: The id is taken in the tenant, or is a system assistant's.
            AssistantQuotaError: The tenant keeps :data:`MAX_ASSISTANTS_PER_TENANT` assistants.
        """
        await self._require_admin(principal)
        vet_configuration(self._graph(graph_id), config=config, context=context)
        key = assistant_id or uuid.uuid4()
        if self._system_by_id(str(key)) is not None:
            raise AssistantExistsError("This id is a system assistant's.")
        params = {
            "tenant": principal.tenant,
            "assistant_id": key,
            "graph_id": graph_id,
            "name": name,
            "description": description,
            "config": Jsonb(dict(config)),
            "context": Jsonb(dict(context)),
            "metadata": Jsonb(dict(metadata)),
            "created_by": principal.user_id,
        }
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%(key)s))", {"key": f"assistants:{principal.tenant}"})
            kept = await (await conn.execute(queries.COUNT_TENANT_ASSISTANTS, params)).fetchone()
            existing = await (await conn.execute(queries.SELECT_ASSISTANT, params)).fetchone()
            if existing is not None:
                if if_exists == "do_nothing":
                    return _assistant(existing)
                raise AssistantExistsError("An assistant with this id already exists.")
            if kept is not None and kept["n"] >= MAX_ASSISTANTS_PER_TENANT:
                raise AssistantQuotaError(f"Your tenant already keeps {MAX_ASSISTANTS_PER_TENANT} assistants.")
            row = await (await conn.execute(queries.INSERT_ASSISTANT, params)).fetchone()
        assert row is not None
        return _assistant(row)

    async def update(
        self,
        principal: Principal,
        assistant_id: str,
        *,
        graph_id: str | None,
        name: str | None,
        description: str | None,
        config: Mapping[str, Any] | None,
        context: Mapping[str, Any] | None,
        metadata: Mapping[str, Any],
    ) -> Assistant:
        """A new version of the assistant: metadata merged, the other given fields replaced.

        Raises:
            AssistantNotFoundError, AssistantReadOnlyError, AssistantAdminRequiredError, AssistantQuotaError,
            GraphNotFoundError, ControlFieldRefusedError, InvalidAssistantConfigError.
        """
        current = await self._changeable(principal, assistant_id)
        graph = graph_id or current.graph_id
        new_config = current.config if config is None else config
        new_context = current.context if context is None else context
        vet_configuration(self._graph(graph), config=new_config, context=new_context)
        params = {"tenant": principal.tenant, "assistant_id": uuid.UUID(current.assistant_id)}
        async with self._pool.connection() as conn, conn.transaction():
            locked = await (await conn.execute(queries.LOCK_ASSISTANT, params)).fetchone()
            if locked is None:
                raise AssistantNotFoundError(f"Assistant {assistant_id[:64]!r} not found.")
            if locked["versions"] >= MAX_VERSIONS:
                raise AssistantQuotaError(f"This assistant already keeps {MAX_VERSIONS} versions.")
            version = int(locked["latest_version"]) + 1
            await conn.execute(
                queries.INSERT_ASSISTANT_VERSION,
                {
                    **params,
                    "version": version,
                    "graph_id": graph,
                    "name": name or locked["name"],
                    "description": locked["description"] if description is None else description,
                    "config": Jsonb(dict(new_config)),
                    "context": Jsonb(dict(new_context)),
                    "metadata": Jsonb({**locked["metadata"], **metadata}),
                    "created_by": principal.user_id,
                },
            )
            row = await (await conn.execute(queries.SET_ASSISTANT_VERSION, {**params, "version": version})).fetchone()
        assert row is not None
        return _assistant(row)

    async def set_latest(self, principal: Principal, assistant_id: str, version: int) -> Assistant:
        """Make an earlier (or later) version the current one.

        Raises:
            AssistantNotFoundError, AssistantReadOnlyError, AssistantAdminRequiredError,
            AssistantVersionNotFoundError: No such version.
        """
        current = await self._changeable(principal, assistant_id)
        params = {"tenant": principal.tenant, "assistant_id": uuid.UUID(current.assistant_id), "version": version}
        async with self._pool.connection() as conn:
            row = await (await conn.execute(queries.SET_ASSISTANT_VERSION, params)).fetchone()
        if row is None:
            raise AssistantVersionNotFoundError(f"The assistant has no version {version}.")
        return _assistant(row)

    async def versions(
        self, tenant: str, assistant_id: str, *, metadata: Mapping[str, Any], limit: int, offset: int
    ) -> list[Assistant]:
        """The assistant's versions, newest first (a system assistant has one).

        Raises:
            AssistantNotFoundError: No such assistant in the tenant.
        """
        current = await self.get(tenant, assistant_id)
        if current.system:
            matches = all(current.metadata.get(k) == v for k, v in metadata.items())
            return [current] if matches and offset == 0 else []
        params = {
            "tenant": tenant,
            "assistant_id": uuid.UUID(current.assistant_id),
            "metadata": Jsonb(dict(metadata)),
            "limit": limit,
            "offset": offset,
        }
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(queries.LIST_ASSISTANT_VERSIONS, params)).fetchall()
        return [_assistant(r) for r in rows]

    async def delete(self, principal: Principal, assistant_id: str) -> None:
        """Delete the assistant and its versions (threads that ran it fall back to the graph's system assistant).

        Raises:
            AssistantNotFoundError, AssistantReadOnlyError, AssistantAdminRequiredError.
        """
        current = await self._changeable(principal, assistant_id)
        async with self._pool.connection() as conn:
            params = {"tenant": principal.tenant, "assistant_id": uuid.UUID(current.assistant_id)}
            await conn.execute(queries.DELETE_ASSISTANT, params)

    async def _changeable(self, principal: Principal, assistant_id: str) -> Assistant:
        """The assistant, if it exists for the caller, is not a system one, and they may change it."""
        current = await self.get(principal.tenant, assistant_id)
        if current.system:
            raise AssistantReadOnlyError("System assistants are shared by every tenant and cannot be changed.")
        await self._require_admin(principal)
        return current


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
