"""A tool call's effect happens once even if the service is killed mid-call and the run is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

from mandate.runtime.settings import Settings
from tests.utils.servers import free_port, wait_until_up
from tests.utils.threads import ask, bearer, last_answer, new_thread
from tests.utils.tokens import login


@contextmanager
def _service(settings: Settings, port: int, *, delay: float) -> Iterator[subprocess.Popen[bytes]]:
    """``mandate serve`` as a child process on the session's Postgres and OpenFGA."""
    env = {
        **os.environ,
        "MANDATE_ENV": "test",
        "MANDATE_DEV_ISSUER": "true",
        "MANDATE_SEED_DEMO": "true",
        "MANDATE_PORT": str(port),
        "MANDATE_DATA_DIR": str(settings.data_dir),
        "MANDATE_DATABASE_URL": settings.database_url,
        "MANDATE_FGA_API_URL": settings.fga_api_url,
        "MANDATE_DEMO_API_DELAY": str(delay),
        "MANDATE_RUN_LEASE_SECONDS": "3",
    }
    log = (Path(settings.data_dir) / f"serve-{port}.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "mandate.cli.main", "serve"], env=env, stdout=log, stderr=log)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process, log=log.name, timeout=60)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        log.close()


def _tickets(db: psycopg.Connection, thread: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM mandate.demo_effects WHERE api = 'tickets' AND idempotency_key LIKE %s", (f"{thread}:%",)
    ).fetchone()
    return int(row[0]) if row else 0


def test_ticket_effect_survives_kill_between_commit_and_response_exactly_once(
    stack_settings: Settings, db: psycopg.Connection
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _service(stack_settings, port, delay=30) as first:
        alice = login(url, "alice")
        with httpx.Client(base_url=url, timeout=60) as client:
            thread = new_thread(client, alice)
            ask(client, alice, thread, "Open a ticket: server room door does not lock")

            def approve() -> None:
                body = {"command": {"resume": {"decisions": [{"type": "approve"}]}}}
                try:
                    httpx.post(f"{url}/threads/{thread}/runs/wait", json=body, headers=bearer(alice), timeout=60)
                except httpx.HTTPError:
                    pass  # the server dies under this request

            approving = threading.Thread(target=approve)
            approving.start()
            deadline = time.monotonic() + 30
            while _tickets(db, thread) == 0:
                assert time.monotonic() < deadline, "the tickets API never committed the effect"
                time.sleep(0.05)
            first.kill()  # SIGKILL: no shutdown, the run dies between the effect and its response
            first.wait(timeout=10)
            approving.join(timeout=30)
    assert _tickets(db, thread) == 1

    with _service(stack_settings, port, delay=0), httpx.Client(base_url=url, timeout=60) as client:
        # The dead process's lease expires; the restarted one takes the run over from its last
        # checkpoint (the tool executor runs again, with the same idempotency key) and finishes it.
        listed = client.get(f"/threads/{thread}/runs", headers=bearer(alice))
        assert listed.status_code == 200, listed.text
        killed = listed.json()[0]
        values = client.get(f"/threads/{thread}/runs/{killed['run_id']}/join", headers=bearer(alice)).json()
        assert "create_ticket: done" in last_answer(values)
        assert client.get(f"/threads/{thread}/runs/{killed['run_id']}", headers=bearer(alice)).json()["status"] == "success"
        assert client.get(f"/threads/{thread}", headers=bearer(alice)).json()["status"] == "idle"
    assert _tickets(db, thread) == 1
    started = db.execute(
        "SELECT count(*) FROM mandate.audit_records WHERE thread_id = %s AND event = 'tool.started'", (thread,)
    ).fetchone()
    assert started is not None and started[0] == 2  # both attempts audited; one effect
