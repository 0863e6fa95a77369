"""A round-robin TCP load balancer on loopback, in a background thread: N local replicas behind one URL.

Each new connection goes to the next backend; a backend that refuses the connection (a killed
replica) is skipped for the next one, as a load balancer's health check would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["balancer"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            await writer.wait_closed()


class _Balancer:
    def __init__(self, backends: list[int]) -> None:
        self._backends = backends
        self._turn = itertools.cycle(range(len(backends)))

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        for _ in self._backends:
            port = self._backends[next(self._turn)]
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            try:
                await asyncio.gather(_pipe(client_reader, writer), _pipe(reader, client_writer))
            finally:
                writer.close()
                client_writer.close()
            return
        client_writer.close()


@contextmanager
def balancer(backends: list[int], *, port: int | None = None) -> Iterator[str]:
    """Serve a balancer over ``backends`` (ports on 127.0.0.1) until the block exits; yields its URL.

    Used by the multi-replica tests and ``bench.replicas``; in production a real load balancer does this.
    """
    port = port or _free_port()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()

    async def serve() -> None:
        server = await asyncio.start_server(_Balancer(backends).handle, "127.0.0.1", port)
        started.set()
        await stop.wait()
        server.close()
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()  # connections still open: cut them, closing their sockets
        await asyncio.sleep(0)
        await server.wait_closed()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    assert started.wait(10), "the balancer did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()
