"""HTTP bodies of the LangGraph-server-shaped API (pydantic at the edge only)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mandate.graphs import ASSISTANT_ID

__all__ = ["MessageIn", "RunCommand", "RunCreate", "RunInput", "ThreadCreate", "ThreadSearch"]

MAX_MESSAGE_CHARS = 20_000


class ThreadCreate(BaseModel):
    """``POST /threads``."""

    thread_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    if_exists: Literal["raise", "do_nothing"] = "raise"


class ThreadSearch(BaseModel):
    """``POST /threads/search``."""

    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


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
    resume: Any


class RunCreate(BaseModel):
    """``POST /threads/{id}/runs/wait``: either ``input`` or ``command``."""

    model_config = ConfigDict(extra="ignore")
    assistant_id: str = ASSISTANT_ID
    input: RunInput | None = None
    command: RunCommand | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
