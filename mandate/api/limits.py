"""Documented bounds on what one request may carry, so no caller can exhaust memory, storage or CPU.

The body limit is enforced as the bytes arrive (a lying or absent ``Content-Length`` changes
nothing); the others are pydantic types used by the request schemas and query parameters.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mandate.runtime.run_request import MAX_METADATA_BYTES, MAX_RESUME_BYTES, Metadata, ResumeValue

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_PAGE",
    "MAX_RESUME_BYTES",
    "BodySizeLimit",
    "Metadata",
    "PageLimit",
    "PageOffset",
    "ResumeValue",
]

MAX_BODY_BYTES = 1024 * 1024
"""Largest request body (1 MiB): 20 messages of 20,000 characters fit, with room for the envelope."""
MAX_PAGE = 1000
"""Most items one page of any list returns."""
MAX_OFFSET = 100_000
"""Deepest offset a page may start at (deeper paging is a scan nobody needs)."""
TOO_LARGE_BODY = b'{"code":"request_too_large","message":"The request body is larger than 1 MiB."}'


PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
PageOffset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]


class BodySizeLimit:
    """ASGI middleware: a body over ``max_bytes`` is answered 413 ``request_too_large``, unread."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._max):
            await _refuse(send)
            return
        received = 0
        responded = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max:
                    raise _TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not responded:
                await _refuse(send)


class _TooLarge(StarletteHTTPException):
    """Raised inside the app when the streamed body passes the limit (rendered by the app's error map)."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


async def _refuse(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(TOO_LARGE_BODY)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": TOO_LARGE_BODY})
