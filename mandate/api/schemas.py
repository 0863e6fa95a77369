"""HTTP bodies of the LangGraph-server-shaped API (pydantic at the edge only).

Requests are ``XCreate`` / ``XPatch`` / ``XSearch``; answers are ``XPublic`` and the other answer
models below: every JSON answer of a route has one (``tests/api/test_openapi.py`` keeps it so). Fields of the
reference API that would let a client steer around a control raise
:class:`~mandate.runtime.errors.ControlFieldRefusedError` from their validator (a typed error
passes through pydantic untouched and is answered by the error map); options Mandate does not
offer raise :class:`~mandate.runtime.errors.UnsupportedOptionError`.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from mandate.runtime.errors import ControlFieldRefusedError, UnsupportedOptionError
from mandate.api.limits import MAX_OFFSET, MAX_PAGE
from mandate.runtime.run_request import (
    MessageIn,
    Metadata,
    MultitaskStrategy,
    RunCommand,
    RunCreate,
    RunInput,
    has_nul,
)

__all__ = [
    "ActorIdentity",
    "AssistantCount",
    "AssistantCreate",
    "AssistantLatest",
    "AssistantPatch",
    "AssistantPublic",
    "AssistantSearch",
    "AssistantSelection",
    "AssistantVersionsSearch",
    "AuditOpenCalls",
    "AuditPage",
    "AuditRecordPublic",
    "AuditTimeline",
    "CheckpointPublic",
    "GraphEdge",
    "GraphNode",
    "GraphPublic",
    "GraphSchemas",
    "InterruptPublic",
    "Liveness",
    "MessageIn",
    "NotReady",
    "ProtectedResourcePublic",
    "Readiness",
    "RunCommand",
    "RunCreate",
    "RunInput",
    "RunPublic",
    "RunValues",
    "RunsCancel",
    "ServerFlags",
    "ServerInfo",
    "StateUpdate",
    "StateUpdated",
    "SubgraphSchemas",
    "TaskPublic",
    "ThreadCount",
    "ThreadCreate",
    "ThreadPatch",
    "ThreadPrune",
    "ThreadPruned",
    "ThreadPublic",
    "ThreadSearch",
    "ThreadSelection",
    "ThreadState",
]

MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 4_000
MAX_CONFIG_BYTES = 16 * 1024
"""Largest ``config`` or ``context`` of an assistant, as JSON."""
MAX_IDS = 1_000
"""Most ids one search, prune or cancel may name."""


def _small_json(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value, default=str).encode()) > MAX_CONFIG_BYTES:
        raise ValueError(f"larger than {MAX_CONFIG_BYTES // 1024} KiB as JSON")
    if has_nul(value):
        raise ValueError("may not contain NUL characters")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("may not contain NUL characters")
    return value


ConfigObject = Annotated[dict[str, Any], AfterValidator(_small_json)]
"""An assistant's ``config`` or ``context``: bounded, and storable (Postgres keeps no NUL in JSON)."""
Text = Annotated[str, AfterValidator(_no_nul)]
"""A string Postgres can store and compare (no NUL)."""


def _unsupported(option: str, why: str) -> UnsupportedOptionError:
    return UnsupportedOptionError(f"{option} is not offered: {why}.")


# Threads.


class ThreadCreate(BaseModel):
    """``POST /threads``. ``supersteps`` (state written as nodes) and ``ttl`` are refused."""

    thread_id: str | None = None
    metadata: Metadata
    if_exists: Literal["raise", "do_nothing"] = "raise"
    supersteps: list[Any] | None = None
    ttl: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _refusals(self) -> ThreadCreate:
        if self.supersteps:
            raise ControlFieldRefusedError("supersteps write state as graph nodes; only a run moves a thread past a node.")
        if self.ttl is not None:
            raise _unsupported("ttl", "threads live until their owner deletes or prunes them")
        return self


class ThreadPatch(BaseModel):
    """``PATCH /threads/{id}``: merge metadata."""

    metadata: Metadata
    ttl: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _refusals(self) -> ThreadPatch:
        if self.ttl is not None:
            raise _unsupported("ttl", "threads live until their owner deletes or prunes them")
        return self


class StateUpdate(BaseModel):
    """``POST /threads/{id}/state``: add user messages to an idle thread; nothing else is writable.

    ``as_node`` is accepted only empty: choosing which node "ran" would move a thread past a
    gate. ``values: null`` is a checkpoint-only update and writes nothing. ``checkpoint`` /
    ``checkpoint_id`` may name only the thread's latest checkpoint (no forks; checked by the route).
    """

    model_config = ConfigDict(extra="forbid")
    values: RunInput | None
    as_node: None = None
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = None

    @property
    def named_checkpoint(self) -> str | None:
        """The checkpoint id the client names, if any."""
        return (self.checkpoint or {}).get("checkpoint_id") or self.checkpoint_id


class StateUpdated(BaseModel):
    """The answer to ``POST /threads/{id}/state``: the checkpoint now current."""

    checkpoint: CheckpointPublic


ThreadStatus = Literal["idle", "busy", "interrupted", "error"]
ThreadField = Literal[
    "thread_id", "created_at", "updated_at", "state_updated_at", "metadata", "config", "status", "values", "interrupts"
]


class ThreadSearch(BaseModel):
    """``POST /threads/search``. ``values`` and ``extract`` filters are refused (state lives in checkpoints)."""

    ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_IDS)
    status: ThreadStatus | None = None
    metadata: Metadata
    values: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=MAX_PAGE)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    sort_by: Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[ThreadField] | None = None
    extract: dict[str, str] | None = None

    @model_validator(mode="after")
    def _refusals(self) -> ThreadSearch:
        if self.values:
            raise _unsupported("A values filter", "thread state lives in checkpoints; filter on metadata instead")
        if self.extract:
            raise _unsupported("extract", "select the fields you need instead")
        return self


class ThreadCount(BaseModel):
    """``POST /threads/count``."""

    status: ThreadStatus | None = None
    metadata: Metadata
    values: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _refusals(self) -> ThreadCount:
        if self.values:
            raise _unsupported("A values filter", "thread state lives in checkpoints; filter on metadata instead")
        return self


class ThreadPrune(BaseModel):
    """``POST /threads/prune``: the caller's threads only; others are skipped, never revealed."""

    thread_ids: list[uuid.UUID] = Field(max_length=MAX_IDS)
    strategy: Literal["delete", "keep_latest"] = "delete"


class ThreadPruned(BaseModel):
    """The answer to ``POST /threads/prune``."""

    pruned_count: int


class ThreadPublic(BaseModel):
    """A thread in the LangGraph server's shape."""

    thread_id: str
    status: ThreadStatus
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    values: dict[str, Any] = Field(default_factory=dict)
    interrupts: dict[str, Any] = Field(default_factory=dict)


# Runs.


RunStatus = Literal["pending", "running", "error", "success", "timeout", "interrupted"]


class RunPublic(BaseModel):
    """A run in the LangGraph server's shape (``graph_id`` added: the graph the run executes)."""

    run_id: str
    thread_id: str
    assistant_id: str
    graph_id: str
    status: RunStatus
    metadata: dict[str, Any]
    kwargs: dict[str, Any] = Field(default_factory=dict)
    multitask_strategy: MultitaskStrategy = "reject"
    created_at: datetime
    updated_at: datetime


class RunsCancel(BaseModel):
    """``POST /runs/cancel``: the caller's runs by thread and ids, or all of theirs in a status."""

    thread_id: uuid.UUID | None = None
    run_ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_IDS)
    status: Literal["pending", "running", "all"] | None = None

    @model_validator(mode="after")
    def _one_selection(self) -> RunsCancel:
        if self.status is None and not (self.thread_id and self.run_ids):
            raise ValueError("name a status, or a thread_id with run_ids")
        return self


# Assistants.


class AssistantCreate(BaseModel):
    """``POST /assistants``."""

    assistant_id: uuid.UUID | None = None
    graph_id: Text = Field(min_length=1, max_length=MAX_NAME_CHARS)
    config: ConfigObject = Field(default_factory=dict)
    context: ConfigObject = Field(default_factory=dict)
    metadata: Metadata
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: Text = Field(default="Untitled", min_length=1, max_length=MAX_NAME_CHARS)
    description: Text | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS)


class AssistantPatch(BaseModel):
    """``PATCH /assistants/{id}``: a new version; metadata is merged, the rest replaced when given."""

    graph_id: Text | None = Field(default=None, min_length=1, max_length=MAX_NAME_CHARS)
    config: ConfigObject | None = None
    context: ConfigObject | None = None
    metadata: Metadata
    name: Text | None = Field(default=None, min_length=1, max_length=MAX_NAME_CHARS)
    description: Text | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS)


AssistantField = Literal[
    "assistant_id", "graph_id", "name", "description", "config", "context", "created_at", "updated_at", "metadata", "version"
]


class AssistantCount(BaseModel):
    """``POST /assistants/count``."""

    metadata: Metadata
    graph_id: Text | None = Field(default=None, max_length=MAX_NAME_CHARS)
    name: Text | None = Field(default=None, max_length=MAX_NAME_CHARS)


class AssistantSearch(AssistantCount):
    """``POST /assistants/search``: newest first unless ``sort_by`` / ``sort_order`` say otherwise."""

    limit: int = Field(default=10, ge=1, le=MAX_PAGE)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    sort_by: Literal["assistant_id", "created_at", "updated_at", "name", "graph_id"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[AssistantField] | None = None


class AssistantVersionsSearch(BaseModel):
    """``POST /assistants/{id}/versions``: newest version first."""

    metadata: Metadata
    limit: int = Field(default=10, ge=1, le=MAX_PAGE)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


class AssistantLatest(BaseModel):
    """``POST /assistants/{id}/latest``: the version to make current (the SDK sends it in the body)."""

    version: int = Field(ge=1)


class AssistantPublic(BaseModel):
    """An assistant in the LangGraph server's shape."""

    assistant_id: str
    graph_id: str
    name: str
    description: str | None
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


# Answers of the LangGraph server's shape beyond the resources above. Fields are declared in the
# order the reference server writes them; a field that is sometimes absent on the wire has no
# default in the body that builds it, and its route answers with ``response_model_exclude_unset``
# so that it stays absent rather than appearing as ``null``.


class ThreadSelection(BaseModel):
    """A thread as ``POST /threads/search`` answers it: every field, or those ``select`` names."""

    thread_id: str | None = None
    status: ThreadStatus | None = None
    metadata: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    values: dict[str, Any] | None = None
    interrupts: dict[str, Any] | None = None


class CheckpointPublic(BaseModel):
    """A checkpoint's address (LangGraph's ``configurable``); other keys LangGraph adds pass through."""

    model_config = ConfigDict(extra="allow")
    thread_id: str | None = None
    checkpoint_ns: str | None = None
    checkpoint_id: str | None = None
    checkpoint_map: dict[str, Any] | None = None


class InterruptPublic(BaseModel):
    """One pending interrupt: its value (one of Mandate's typed payloads, or a graph's own) and id."""

    value: Any
    id: str | None = None


class TaskPublic(BaseModel):
    """A pending task of a thread's state; ``state`` is a subgraph task's own state when asked for."""

    id: str
    name: str
    error: str | None = None
    interrupts: list[InterruptPublic] = Field(default_factory=list)
    checkpoint: CheckpointPublic | None = None
    state: ThreadState | None = None
    result: Any = None


class ThreadState(BaseModel):
    """A thread's state at a checkpoint (``/threads/{id}/state``, ``/history``)."""

    values: dict[str, Any] | list[dict[str, Any]]
    next: list[str]
    tasks: list[TaskPublic]
    interrupts: list[InterruptPublic]
    metadata: dict[str, Any] | None
    created_at: str | None
    """As LangGraph wrote it in the checkpoint (ISO 8601)."""
    checkpoint: CheckpointPublic
    parent_checkpoint: CheckpointPublic | None


class RunValues(BaseModel):
    """What ``/runs/wait`` and ``/join`` answer: the thread's values, and ``__interrupt__`` when it paused.

    The values are the graph's own state keys (for Mandate's graphs, ``messages`` and what the
    nodes record), so any key is allowed; ``__interrupt__`` is typed.
    """

    model_config = ConfigDict(extra="allow", serialize_by_alias=True)
    interrupt: list[InterruptPublic] | None = Field(default=None, alias="__interrupt__")

    @model_serializer(mode="wrap")
    def _interrupt_last(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]  # no return type: the schema stays the model's
        """The values first and ``__interrupt__`` after them, as LangGraph writes it."""
        body: dict[str, Any] = handler(self)
        if "__interrupt__" in body:
            body["__interrupt__"] = body.pop("__interrupt__")
        return body


class ServerFlags(BaseModel):
    """What ``/info`` says the server offers."""

    assistants: bool
    crons: bool
    langsmith: bool


class ServerInfo(BaseModel):
    """``GET /info``."""

    version: str
    flags: ServerFlags


class Liveness(BaseModel):
    """``GET /ok``."""

    ok: bool


class Readiness(BaseModel):
    """``GET /ready`` when every check passed: the checks by name."""

    ready: bool
    checks: dict[str, bool]


class NotReady(BaseModel):
    """``GET /ready`` answering 503: Mandate's error body, with the checks by name."""

    code: Literal["not_ready"]
    message: str
    checks: dict[str, bool]


class ProtectedResourcePublic(BaseModel):
    """This service's OAuth 2.0 protected resource metadata (RFC 9728)."""

    resource: str
    authorization_servers: list[str]
    bearer_methods_supported: list[str]
    scopes_supported: list[str]


class AssistantSelection(BaseModel):
    """An assistant as ``POST /assistants/search`` answers it: every field, or those ``select`` names."""

    assistant_id: str | None = None
    graph_id: str | None = None
    name: str | None = None
    description: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    version: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class GraphNode(BaseModel):
    """A node of a drawn graph (LangChain's ``Graph.to_json``); ``type`` and ``data`` are absent for a bare node."""

    id: str | int
    type: str | None = None
    data: Any = None
    metadata: dict[str, Any] | None = None


class GraphEdge(BaseModel):
    """An edge of a drawn graph; ``data`` and ``conditional`` only when set."""

    source: str | int
    target: str | int
    data: Any = None
    conditional: bool | None = None


class GraphPublic(BaseModel):
    """``GET /assistants/{id}/graph``: the graph's nodes and edges."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]


class SubgraphSchemas(BaseModel):
    """JSON schemas of one subgraph."""

    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    state_schema: dict[str, Any] | None


class GraphSchemas(SubgraphSchemas):
    """``GET /assistants/{id}/schemas``: the graph's schemas and what an assistant may set."""

    graph_id: str
    config_schema: dict[str, Any] | None
    context_schema: dict[str, Any] | None


# Audit.


class ActorIdentity(BaseModel):
    """Who an audit record's pseudonymous actor is: their issuer and subject."""

    issuer: str
    subject: str


class AuditRecordPublic(BaseModel):
    """One audit record as an auditor reads it; ``open`` only on ``tool.started``."""

    id: str
    tenant: str
    seq: int
    recorded_at: str
    """ISO 8601, as written (``+00:00``)."""
    event: str
    actor: str
    """The pseudonym (``psn_…``)."""
    thread_id: str | None
    agent: str | None
    tool: str | None
    tool_call_id: str | None
    decision: str | None
    detail: dict[str, Any]
    trace_id: str | None
    span_id: str | None
    prev_hash: str
    hash: str
    open: bool | None = None
    """``tool.started`` only: no ``tool.succeeded`` or ``tool.failed`` followed."""
    actor_identity: ActorIdentity | None
    """``None`` when the person was erased, or the directory entry does not recompute to the pseudonym."""


class AuditPage(BaseModel):
    """``GET /audit``: newest first; ``next_cursor`` names the next page, if there is one."""

    records: list[AuditRecordPublic]
    next_cursor: int | None


class AuditTimeline(BaseModel):
    """``GET /audit/threads/{id}/timeline``."""

    thread_id: str
    entries: list[AuditRecordPublic]
    open_tool_calls: int


class AuditOpenCalls(BaseModel):
    """``GET /audit/open``."""

    records: list[AuditRecordPublic]


TaskPublic.model_rebuild()
