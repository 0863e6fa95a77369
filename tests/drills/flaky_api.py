"""A downstream API that fails on cue: a real HTTP server on loopback, for the downstream drills.

It stands in for a customer's API (a third party, so a double is allowed): each POST is one
attempt, answered by the next step of a script (``503``, ``reset``, ``commit_then_reset``,
``hang``, ``400``, …, then ``ok`` once the script is spent). It applies an effect at most once
per ``Idempotency-Key``, as a well-behaved API does, and records every attempt's key, so a test
can tell retries with one key from a second effect.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG_SECONDS = 30.0
"""How long a ``hang`` step holds its answer: far longer than the client's timeout in the drills."""


@dataclass(kw_only=True)
class FlakyApi:
    """The script, the attempts seen and the effects made (shared with the server's threads)."""

    script: list[str] = field(default_factory=list)
    """Steps still to play, one per attempt; ``ok`` when empty (``repeat`` keeps the last step forever)."""
    repeat: bool = False
    attempts: list[str | None] = field(default_factory=list)
    """The ``Idempotency-Key`` of every attempt, in order."""
    effects: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Effects by idempotency key: the body and the id given."""
    released: threading.Event = field(default_factory=threading.Event)
    """Set to end every hanging step at once (on shutdown)."""
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_step(self, key: str | None) -> str:
        with self._lock:
            self.attempts.append(key)
            if not self.script:
                return "ok"
            return self.script[0] if self.repeat and len(self.script) == 1 else self.script.pop(0)

    def commit(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        """Apply the effect once per key; a repeat gets the first effect's answer."""
        with self._lock:
            effect = self.effects.setdefault(key, {"id": f"EXT-{len(self.effects) + 1}", "body": body})
            return {"id": effect["id"], "status": "created"}


def _handler(api: FlakyApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass  # quiet: the drills read the attempts, not an access log

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            key = self.headers.get("Idempotency-Key")
            step = api.next_step(key)
            if step == "reset":
                return self._reset()
            if step == "hang":
                api.released.wait(HANG_SECONDS)
                return self._reset()
            if step.isdigit():
                return self._answer(int(step), {"error": "scripted failure"})
            if key is None:
                return self._answer(400, {"error": "Idempotency-Key required"})
            answer = api.commit(key, body)
            if step == "commit_then_reset":
                return self._reset()  # the effect happened; its answer is lost
            self._answer(200, answer)

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reset(self) -> None:
            """Close with RST (SO_LINGER 0): the client sees a connection reset, not an answer."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

    return Handler


@contextmanager
def flaky_api(*script: str, repeat: bool = False) -> Iterator[FlakyApi]:
    """Serve a :class:`FlakyApi` playing ``script`` on a free loopback port until the block exits."""
    api = FlakyApi(script=list(script), repeat=repeat)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    api.url = f"http://127.0.0.1:{server.server_address[1]}/tickets"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
