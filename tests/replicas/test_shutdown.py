"""SIGTERM: a replica stops claiming, gives running runs its grace period, hands the rest back; another
replica of the deployment continues them at once from their last checkpoint."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import psycopg

from mandate.runtime.settings import Settings
from tests.replicas.conftest import SLOW, replica_env, start_replica
from tests.utils.servers import free_port
from tests.utils.threads import bearer
from tests.utils.tokens import login


def test_sigterm_hands_running_runs_back_and_another_replica_finishes_them(
    stack_settings: Settings, model: str, db: psycopg.Connection
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(stack_settings.data_dir) / f"shutdown-{port}.log"

    def env(name: str) -> dict[str, str]:
        return replica_env(
            stack_settings, port=port, public_url=url, name=name, seed=True, model_url=model,
            MANDATE_SHUTDOWN_GRACE_SECONDS="0", MANDATE_RUN_LEASE_SECONDS="60",
        )

    first = start_replica(stack_settings, env("first"), url, log)
    try:
        alice = login(url, "alice")
        with httpx.Client(base_url=url, headers=bearer(alice), timeout=60) as client:
            thread = client.post("/threads", json={}).json()["thread_id"]
            body = {"input": {"messages": [{"role": "user", "content": f"What does the contract say? {SLOW}"}]}}
            run = client.post(f"/threads/{thread}/runs", json=body).json()
            for _ in range(600):  # bounded polling; no timing is asserted
                if client.get(f"/threads/{thread}/runs/{run['run_id']}").json()["status"] == "running":
                    break
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its shutdown
    held = db.execute(
        "SELECT status, lease_owner, lease_expires_at = '-infinity', executed_by FROM mandate.runs WHERE run_id = %s",
        (run["run_id"],),
    ).fetchone()
    assert held == ("running", None, True, ["first"]), "handed back, not left to a 60 s lease"

    second = start_replica(stack_settings, env("second"), url, log)
    try:
        with httpx.Client(base_url=url, headers=bearer(login(url, "alice")), timeout=60) as client:
            values = client.get(f"/threads/{thread}/runs/{run['run_id']}/join").json()
            final = client.get(f"/threads/{thread}/runs/{run['run_id']}").json()
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    assert final["status"] == "success"
    assert [m["type"] for m in values["messages"]] == ["human", "ai"]
    executed_by = db.execute("SELECT executed_by FROM mandate.runs WHERE run_id = %s", (run["run_id"],)).fetchone()
    assert executed_by == (["first", "second"],)
