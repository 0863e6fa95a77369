"""The delegated credentials of the tool call that is running, for the tool's own code.

The gate exchanges the requester's token for one limited to the tool's API and scopes, then runs
the tool with it set here; a tool reads it with :func:`delegated_credentials`. It never passes
through the tool's arguments, so it never reaches the model, state, callbacks or streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from mandate.auth import DelegatedToken
from mandate.tools.errors import ToolError

__all__ = ["CallCredentials", "delegated_credentials", "running_with"]


@dataclass(frozen=True, kw_only=True, slots=True)
class CallCredentials:
    """What a tool needs to act downstream for the requester, exactly once."""

    token: DelegatedToken | None = field(repr=False)
    """The delegated token for the tool's API (``None`` for a tool without one)."""
    idempotency_key: str
    """The same on every attempt of this call: send it so a retry never has a second effect."""


_running: ContextVar[CallCredentials | None] = ContextVar("mandate_call_credentials", default=None)


@contextmanager
def running_with(credentials: CallCredentials) -> Iterator[None]:
    """Make ``credentials`` those of the tool call run inside this block."""
    reset = _running.set(credentials)
    try:
        yield
    finally:
        _running.reset(reset)


def delegated_credentials() -> CallCredentials:
    """The credentials of the tool call now running.

    Raises:
        ToolError: Called outside a call that passed Mandate's gate (fail closed).
    """
    credentials = _running.get()
    if credentials is None:
        raise ToolError("No tool call passed Mandate's gate here; there are no delegated credentials.")
    return credentials
