"""A queued run's credentials: the requester's token waits sealed in the vault; if it expires before a
worker takes the run, the run keeps its verified requester but delegates nothing, and pauses with the
``reauthenticate`` interrupt until the requester resumes with a fresh sign-in."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import psycopg

from mandate.runtime.settings import Settings
from tests.replicas.conftest import replica_env, start_replica
from tests.utils.servers import free_port
from tests.utils.threads import bearer
from tests.utils.tokens import claims_of, dev_issuer_key, fresh_claims, login, sign

TOKEN_SECONDS = 4


def test_run_queued_longer_than_its_token_lives_asks_the_requester_to_sign_in_again(
    stack_settings: Settings, model: str, db: psycopg.Connection
) -> None:
    worker_port, api_port = free_port(), free_port()
    url, api_url = f"http://127.0.0.1:{worker_port}", f"http://127.0.0.1:{api_port}"
    log = Path(stack_settings.data_dir) / f"credentials-{worker_port}.log"

    def env(name: str, port: int, **extra: str) -> dict[str, str]:
        return replica_env(stack_settings, port=port, public_url=url, name=name, seed=True, model_url=model, **extra)

    worker = start_replica(stack_settings, env("worker", worker_port), url, log)
    api = start_replica(stack_settings, env("api-only", api_port, MANDATE_RUN_WORKERS="0"), api_url, log)
    try:
        alice = login(url, "alice")
        with httpx.Client(base_url=url, headers=bearer(alice), timeout=60) as client:
            thread = client.post("/threads", json={}).json()["thread_id"]
            body = {"input": {"messages": [{"role": "user", "content": "Open a ticket: the projector is broken"}]}}
            paused = client.post(f"/threads/{thread}/runs/wait", json=body).json()
        assert paused["__interrupt__"][0]["value"]["kind"] == "consent"
        with httpx.Client(base_url=api_url, timeout=60) as client:
            assert client.get(f"/threads/{thread}", headers=bearer(alice)).status_code == 200  # keys cached
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
            short = sign(fresh_claims(claims_of(alice), exp=int(time.time()) + TOKEN_SECONDS), dev_issuer_key(stack_settings.data_dir))
            approve = {"command": {"resume": {"decisions": [{"type": "approve"}]}}}
            queued = client.post(f"/threads/{thread}/runs", json=approve, headers=bearer(short)).json()
            assert queued["status"] == "pending"  # an API-only replica queues, never executes
        time.sleep(TOKEN_SECONDS + 1)  # the token expires while the run waits in the queue
        worker = start_replica(stack_settings, env("worker-again", worker_port), url, log)
        with httpx.Client(base_url=api_url, timeout=60) as client:
            values = client.get(f"/threads/{thread}/runs/{queued['run_id']}/join", headers=bearer(alice)).json()
            pause = values["__interrupt__"][0]["value"]
            assert (pause["kind"], pause["reason"]) == ("reauthenticate", "token_expired")
            assert db.execute("SELECT count(*) FROM mandate.demo_effects WHERE idempotency_key LIKE %s", (f"{thread}:%",)).fetchone() == (0,)
            fresh = login(url, "alice")
            done = client.post(f"/threads/{thread}/runs/wait", json={"command": {"resume": {}}}, headers=bearer(fresh)).json()
        assert "create_ticket: done" in done["messages"][-1]["content"]
        assert db.execute("SELECT count(*) FROM mandate.demo_effects WHERE idempotency_key LIKE %s", (f"{thread}:%",)).fetchone() == (1,)
    finally:
        for process in (worker, api):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
