"""Three `mandate serve` replicas on loopback over the session's one Postgres and one OpenFGA,
behind a round-robin load balancer whose URL is their public URL (so their audience, their dev
issuer and their run queue are one deployment's)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi import FastAPI, Request, Response

from mandate.devstack.balancer import balancer
from mandate.runtime.settings import Settings
from tests.utils.openai_double import ChatDouble
from tests.utils.servers import free_port, serve_in_thread, wait_until_up

LEASE_SECONDS = 5.0
"""Short leases: a killed replica's runs are taken over within seconds."""
DEMO_API_DELAY = 1.5
"""The demo APIs answer this long after committing an effect: a tool call is in flight that long."""
SLOW = "take your time"
"""A message with this makes the model double answer after :data:`SLOW_SECONDS` (a run in flight)."""
SLOW_SECONDS = 2.0
HELD = "hold the line"
"""A message with this makes the model double answer only after :data:`HELD_SECONDS`: a run that
ends before then as anything but cancelled shows that the cancel did not reach it."""
HELD_SECONDS = 60.0
WEBHOOK_SECRET = "test-webhook-secret"


@dataclass
class Replicas:
    """The running replicas: their URLs, the balancer's URL (their public URL), their processes."""

    urls: list[str]
    public_url: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def kill(self, index: int) -> None:
        """SIGKILL replica ``index``: no drain, no hand-back, its leases simply expire."""
        self.processes[index].send_signal(signal.SIGKILL)
        self.processes[index].wait(timeout=30)

    def alive(self) -> list[str]:
        """URLs of the replicas still running."""
        return [url for url, p in zip(self.urls, self.processes, strict=True) if p.poll() is None]


def replica_env(
    settings: Settings, *, port: int, public_url: str, name: str, seed: bool, model_url: str, **extra: str
) -> dict[str, str]:
    """The environment of one `mandate serve` replica of the test deployment."""
    return {
        **os.environ,
        "MANDATE_ENV": "test",
        "MANDATE_DEV_ISSUER": "true",
        "MANDATE_SEED_DEMO": "true" if seed else "false",
        "MANDATE_PORT": str(port),
        "MANDATE_PUBLIC_URL": public_url,
        "MANDATE_REPLICA_ID": name,
        "MANDATE_DATA_DIR": str(settings.data_dir),
        "MANDATE_DATABASE_URL": settings.database_url,
        "MANDATE_FGA_API_URL": settings.fga_api_url,
        "MANDATE_RUN_LEASE_SECONDS": str(LEASE_SECONDS),
        "MANDATE_SHUTDOWN_GRACE_SECONDS": "5",
        "MANDATE_DEMO_API_DELAY": str(DEMO_API_DELAY),
        "MANDATE_LLM_BASE_URL": f"{model_url}/v1",
        "MANDATE_LLM_API_KEY": "sk-test-double",
        "MANDATE_LLM_MODEL": "double-1",
        "MANDATE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        **extra,
    }


def start_replica(settings: Settings, env: dict[str, str], url: str, log: Path) -> subprocess.Popen[bytes]:
    """Start one replica and wait until it answers ``/ok``."""
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "mandate.cli.main", "serve"], env=env, stdout=out, stderr=out)
    wait_until_up(url, process, log=str(log), timeout=120)
    return process


@pytest.fixture(scope="session")
def model() -> Iterator[str]:
    """The OpenAI-compatible double the replicas plan and answer with (slow on :data:`SLOW` and :data:`HELD`)."""
    double = ChatDouble(
        rules=[
            (r"projector|ticket", "create_ticket", {"title": "Projector broken", "priority": "high"}),
            (r"contract", "search_documents", {"query": "contract terms payment"}),
        ],
        delays={SLOW: SLOW_SECONDS, HELD: HELD_SECONDS},
    )
    with serve_in_thread(double.app()) as url:
        yield url


@dataclass
class Hooks:
    """A webhook receiver on loopback: every delivery's headers and raw body."""

    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture(scope="session")
def hooks() -> Iterator[Hooks]:
    """The webhook receiver the replicas' allow-list names (its first two answers are 503: retries)."""
    api = FastAPI()
    state = Hooks(url="")

    @api.post("/hook")
    async def hook(request: Request) -> Response:
        state.received.append((dict(request.headers), await request.body()))
        return Response(status_code=503 if len(state.received) % 3 else 204)

    with serve_in_thread(api) as url:
        state.url = f"{url}/hook"
        yield state


@contextmanager
def replica_set(stack_settings: Settings, model: str, hooks: Hooks) -> Iterator[Replicas]:
    """Three replicas behind one balancer; the first seeds the demo world before the others start."""
    ports = [free_port() for _ in range(3)]
    with balancer(ports) as public_url:
        group = Replicas(urls=[f"http://127.0.0.1:{p}" for p in ports], public_url=public_url)
        try:
            for index, (port, url) in enumerate(zip(ports, group.urls, strict=True)):
                log = Path(stack_settings.data_dir) / f"replica-{index}-{port}.log"
                env = replica_env(
                    stack_settings, port=port, public_url=public_url, name=f"r{index}", seed=index == 0, model_url=model,
                    MANDATE_WEBHOOK_ORIGINS=hooks.url.removesuffix("/hook"),
                )
                group.processes.append(start_replica(stack_settings, env, url, log))
                group.logs.append(log)
            yield group
        finally:
            for process in group.processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in group.processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


@pytest.fixture(scope="session")
def replicas(stack_settings: Settings, model: str, hooks: Hooks) -> Iterator[Replicas]:
    """Three replicas shared by the lifecycle and double-texting tests (none of them kills one)."""
    with replica_set(stack_settings, model, hooks) as group:
        yield group


@pytest.fixture(scope="module")
def doomed_replicas(stack_settings: Settings, model: str, hooks: Hooks) -> Iterator[Replicas]:
    """Three replicas of their own for a test that SIGKILLs one of them."""
    with replica_set(stack_settings, model, hooks) as group:
        yield group
