"""HTTP bodies of the LangGraph-server-shaped API (pydantic at the edge only)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mandate.service.limits import MAX_OFFSET, MAX_PAGE, Metadata, ResumeValue


__all__ = ["MessageIn", "RunCommand", "RunCreate", "RunInput", "StateUpdate", "ThreadCreate", "ThreadPatch", "ThreadSearch"]

MAX_MESSAGE_CHARS = 20_000


class ThreadCreate(BaseModel):
    """``POST /threads``."""

    thread_id: str | None = None
    metadata: Metadata
    if_exists: Literal["raise", "do_nothing"] = "raise"


class ThreadPatch(BaseModel):
    """``PATCH /threads/{id}``: merge metadata."""

    metadata: Metadata


class StateUpdate(BaseModel):
    """``POST /threads/{id}/state``: add user messages to an idle thread; nothing else is writable.

    ``as_node`` is accepted only empty: choosing which node "ran" would move a thread past a
    gate. ``values: null`` is a checkpoint-only update and writes nothing.
    """

    model_config = ConfigDict(extra="forbid")
    values: RunInput | None
    as_node: None = None
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = None

    @model_validator(mode="after")
    def _no_fork(self) -> StateUpdate:
        if self.checkpoint or self.checkpoint_id:
            raise ValueError("a state update cannot name a checkpoint (forks are not allowed)")
        return self


class ThreadSearch(BaseModel):
    """``POST /threads/search``."""

    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    metadata: Metadata
    limit: int = Field(default=10, ge=1, le=MAX_PAGE)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


class MessageIn(BaseModel):
    """One user message; LangChain's ``type`` and OpenAI's ``role`` spellings are both accepted."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["user", "human"] | None = None
    type: Literal["user", "human"] | None = None
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)

    @model_validator(mode="after")
    def _is_from_user(self) -> MessageIn:
        if self.role is None and self.type is None:
            raise ValueError("a message needs role 'user' (or type 'human')")
        return self


class RunInput(BaseModel):
    """Run input: only messages; nothing else in state can be set by a client."""

    model_config = ConfigDict(extra="forbid")
    messages: list[MessageIn] = Field(min_length=1, max_length=20)


class RunCommand(BaseModel):
    """Resume a paused run with the answer to its interrupt."""

    model_config = ConfigDict(extra="forbid")
    resume: ResumeValue


StreamMode = Literal["values", "updates", "messages", "messages-tuple", "custom", "debug", "tasks", "checkpoints"]


class RunCreate(BaseModel):
    """A run: ``input`` starts one, ``command.resume`` answers an interrupt, neither continues one.

    Fields of the LangGraph server API that would let a client steer around Mandate's controls
    (``config``, ``context``, ``checkpoint``) are accepted only empty.
    """

    model_config = ConfigDict(extra="ignore")
    assistant_id: str | None = None
    """Graph id or assistant UUID; omitted, the thread's own assistant (``mandate`` for a new thread)."""
    input: RunInput | None = None
    command: RunCommand | None = None
    metadata: Metadata
    stream_mode: StreamMode | list[StreamMode] = "values"
    stream_subgraphs: bool = False
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None
    if_not_exists: Literal["create", "reject"] = "reject"

    @model_validator(mode="after")
    def _no_steering(self) -> RunCreate:
        configurable = (self.config or {}).get("configurable") or {}
        if configurable or self.context or self.checkpoint or self.checkpoint_id:
            raise ValueError("config.configurable, context and checkpoint cannot be set by clients")
        return self

    @property
    def stream_modes(self) -> list[str]:
        """Requested stream modes, as a list without duplicates."""
        modes = [self.stream_mode] if isinstance(self.stream_mode, str) else list(self.stream_mode)
        return list(dict.fromkeys(modes)) or ["values"]
