"""What a run request is: the body that starts or resumes a run, as the run engine stores and reads it.

The API takes it at the edge (``POST /threads/{id}/runs``); the engine validates it again from the
runs table when a replica claims the run, so it lives here, beside the engine, not in the HTTP room.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from mandate.runtime.errors import ControlFieldRefusedError, UnsupportedOptionError

__all__ = [
    "MAX_MESSAGE_CHARS",
    "MAX_METADATA_BYTES",
    "MAX_RESUME_BYTES",
    "CancelAction",
    "MessageIn",
    "Metadata",
    "MultitaskStrategy",
    "ResumeValue",
    "RunCommand",
    "RunCreate",
    "RunInput",
    "StreamMode",
    "has_nul",
]

MAX_MESSAGE_CHARS = 20_000
MAX_METADATA_BYTES = 16 * 1024
"""Largest metadata object of a thread or run, as JSON."""
MAX_RESUME_BYTES = 64 * 1024
"""Largest answer to an interrupt, as JSON."""


def _json_size(value: Any, limit: int, what: str) -> Any:
    if len(json.dumps(value, default=str).encode()) > limit:
        raise ValueError(f"{what} is larger than {limit // 1024} KiB as JSON")
    return value


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def _storable(value: Any, limit: int, what: str) -> Any:
    """Bounded, and free of NUL characters, which Postgres cannot keep in JSON."""
    if has_nul(value):
        raise ValueError(f"{what} may not contain NUL characters")
    return _json_size(value, limit, what)


Metadata = Annotated[
    dict[str, Any], AfterValidator(lambda v: _storable(v, MAX_METADATA_BYTES, "metadata")), Field(default_factory=dict)
]
ResumeValue = Annotated[Any, AfterValidator(lambda v: _json_size(v, MAX_RESUME_BYTES, "resume"))]


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


MultitaskStrategy = Literal["reject", "enqueue", "interrupt", "rollback"]
CancelAction = Literal["interrupt", "rollback"]

StreamMode = Literal[
    "values", "updates", "messages", "messages-tuple", "custom", "debug", "tasks", "checkpoints", "events"
]


class RunCreate(BaseModel):
    """A run: ``input`` starts one, ``command.resume`` answers an interrupt, neither continues one.

    Fields of the LangGraph server API that would let a client steer around Mandate's controls
    (``config.configurable``, ``context``, ``checkpoint``) are refused with ``control_field_refused``;
    an assistant's vetted configuration is what a run applies.
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
    on_completion: Literal["delete", "keep"] = "delete"
    """Stateless runs only: whether their temporary thread is deleted when they end (a paused one stays)."""
    multitask_strategy: MultitaskStrategy = "reject"
    """What a run created while the thread has one pending or running does: ``reject`` (409
    ``thread_busy``), ``enqueue`` (runs after it), ``interrupt`` (stops it, keeping its checkpoints)
    or ``rollback`` (stops it and deletes it and its checkpoints)."""
    on_disconnect: Literal["cancel", "continue"] = "continue"
    """``/runs/wait`` and ``/runs/stream``: whether the run is cancelled when the client goes away."""
    webhook: str | None = Field(default=None, max_length=2048)
    """Where to POST the run's outcome when it ends (an allow-listed host; signed, retried)."""

    after_seconds: float | None = None
    """Not offered: a run starts when a worker is free (refused unless 0, rather than ignored)."""
    durability: Literal["async"] | None = None
    """Only LangGraph's default: ``exit`` would let a crash replay tool calls, ``sync`` buys nothing here."""

    @field_validator("after_seconds")
    @classmethod
    def _now(cls, after: float | None) -> float | None:
        if after:
            raise UnsupportedOptionError("after_seconds is not offered: a run starts as soon as a worker is free; schedule it on your side.")
        return after

    @model_validator(mode="after")
    def _no_steering(self) -> RunCreate:
        configurable = (self.config or {}).get("configurable") or {}
        if configurable or self.context or self.checkpoint or self.checkpoint_id:
            raise ControlFieldRefusedError(
                "config.configurable, context and checkpoint cannot be set by clients; an assistant's vetted configuration applies."
            )
        return self

    @property
    def stream_modes(self) -> list[str]:
        """Requested stream modes, as a list without duplicates."""
        modes = [self.stream_mode] if isinstance(self.stream_mode, str) else list(self.stream_mode)
        return list(dict.fromkeys(modes)) or ["values"]
