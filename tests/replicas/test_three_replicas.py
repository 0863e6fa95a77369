"""The proof of issue 11: three replicas over one Postgres and one OpenFGA, 200 runs of two tenants
through all of them (waits, streams, background runs, interrupts resumed on another replica), one
replica SIGKILLed mid-stream. No run is lost, none executes an effect twice, no event reaches the
wrong user, no tenant sees another's data, and every tenant's audit chain verifies."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from httpx_sse import aconnect_sse

from mandate.runtime.settings import Settings
from tests.replicas.conftest import SLOW, Replicas
from tests.utils.threads import bearer
from tests.utils.tokens import login

RUNS = int(os.environ.get("MANDATE_TEST_REPLICA_RUNS", "200"))
"""Runs the proof drives (a ticket job is two runs: the one that pauses, the resume)."""
CONCURRENCY = 12
KILLED = 2
"""The replica SIGKILLed once a third of the jobs have started (it serves and executes runs until then)."""
TENANT_OF = {"alice": "acme", "carol": "globex"}
OTHER_TENANT_MARKERS = {"alice": ("Globex",), "carol": ("ACME", "net 45")}


@dataclass
class Job:
    """One client's work on its own thread, and everything it saw."""

    index: int
    user: str
    kind: str
    thread: str = ""
    run_ids: list[str] = field(default_factory=list)
    served_by: list[int] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    """Every event and answer body the client received, as JSON text."""
    stream_ids: list[int] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"job-{self.index:04d}"


class Driver:
    """Sends each request to a live replica, round robin; retries on one that is alive."""

    def __init__(self, replicas: Replicas, tokens: dict[str, str]) -> None:
        self.replicas = replicas
        self.tokens = tokens
        self._turn = itertools.count()
        self._clients = {url: httpx.AsyncClient(base_url=url, timeout=120) for url in replicas.urls}

    def pick(self, avoid: int | None = None) -> int:
        alive = [i for i, url in enumerate(self.replicas.urls) if url in self.replicas.alive() and i != avoid]
        return alive[next(self._turn) % len(alive)]

    def client(self, index: int) -> httpx.AsyncClient:
        return self._clients[self.replicas.urls[index]]

    async def call(self, job: Job, method: str, path: str, *, avoid: int | None = None, **kw: Any) -> httpx.Response:
        for _ in range(5):
            index = self.pick(avoid)
            try:
                answer = await self.client(index).request(method, path, headers=bearer(self.tokens[job.user]), **kw)
            except httpx.HTTPError:
                await asyncio.sleep(0.2)  # that replica died under the request: ask a live one
                continue
            job.served_by.append(index)
            return answer
        raise AssertionError(f"{job.tag}: no replica answered {method} {path}")

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()


def _input(job: Job, text: str, **extra: Any) -> dict[str, Any]:
    return {"assistant_id": "mandate", "input": {"messages": [{"role": "user", "content": f"{text} ({job.tag})"}]}, **extra}


async def _run_of(driver: Driver, job: Job, known: int) -> str | None:
    """The newest run of the job's thread beyond the ``known`` ones (a request died before answering)."""
    runs = (await driver.call(job, "GET", f"/threads/{job.thread}/runs")).json()
    return str(runs[0]["run_id"]) if len(runs) > known else None


async def _wait(driver: Driver, job: Job, body: dict[str, Any], *, avoid: int | None = None) -> dict[str, Any]:
    """``/runs/wait``; if the replica dies under it, join the run it created (or create it on a live one)."""
    known = len(job.run_ids)
    try:
        answer = await driver.client(index := driver.pick(avoid)).post(
            f"/threads/{job.thread}/runs/wait", json=body, headers=bearer(driver.tokens[job.user])
        )
        job.served_by.append(index)
        assert answer.status_code == 200, answer.text
        job.run_ids.append(answer.headers["content-location"].rsplit("/", 1)[-1])
        job.seen.append(answer.text)
        return dict(answer.json())
    except httpx.HTTPError:
        run_id = await _run_of(driver, job, known)
        if run_id is None:
            return await _wait(driver, job, body, avoid=avoid)
        job.run_ids.append(run_id)
        values = (await driver.call(job, "GET", f"/threads/{job.thread}/runs/{run_id}/join")).json()
        job.seen.append(json.dumps(values))
        return dict(values)


async def _stream(driver: Driver, job: Job, body: dict[str, Any]) -> None:
    """Stream a run; if its replica dies, rejoin on a live one after the last event id received."""
    index, run_id, last, ended = driver.pick(), None, 0, False
    try:
        async with aconnect_sse(
            driver.client(index), "POST", f"/threads/{job.thread}/runs/stream", json=body,
            headers=bearer(driver.tokens[job.user]),
        ) as source:
            job.served_by.append(index)
            async for event in source.aiter_sse():
                job.seen.append(event.data)
                job.stream_ids.append(int(event.id))
                last, ended = int(event.id), event.event in ("end", "error")
                if event.event == "metadata":
                    run_id = json.loads(event.data)["run_id"]
    except httpx.HTTPError:
        pass
    while not ended:
        run_id = run_id or await _run_of(driver, job, 0)
        if run_id is None:
            return await _stream(driver, job, body)
        rejoin = driver.pick(avoid=index)
        try:
            async with aconnect_sse(
                driver.client(rejoin), "GET", f"/threads/{job.thread}/runs/{run_id}/stream",
                headers={**bearer(driver.tokens[job.user]), "Last-Event-ID": str(last)},
            ) as source:
                job.served_by.append(rejoin)
                async for event in source.aiter_sse():
                    job.seen.append(event.data)
                    job.stream_ids.append(int(event.id) if event.id else 0)
                    last, ended = int(event.id or last), event.event in ("end", "error")
        except httpx.HTTPError:
            await asyncio.sleep(0.2)
    assert run_id is not None
    job.run_ids.append(run_id)


async def _do(driver: Driver, job: Job) -> None:
    job.thread = str((await driver.call(job, "POST", "/threads", json={})).json()["thread_id"])
    if job.kind == "wait":
        await _wait(driver, job, _input(job, "What does the contract say?"))
    elif job.kind == "stream":
        await _stream(driver, job, _input(job, f"What does the contract say? {SLOW}"))
    elif job.kind == "background":
        run = (await driver.call(job, "POST", f"/threads/{job.thread}/runs", json=_input(job, "What does the contract say?"))).json()
        job.run_ids.append(run["run_id"])
        values = await driver.call(job, "GET", f"/threads/{job.thread}/runs/{run['run_id']}/join", avoid=job.served_by[-1])
        job.seen.append(values.text)
    else:  # a ticket: pauses for consent on one replica, resumed on another
        paused = await _wait(driver, job, _input(job, "Open a ticket: the projector is broken"))
        assert paused.get("__interrupt__", [{}])[0].get("value", {}).get("kind") == "consent", (job.tag, paused)
        approve = {"command": {"resume": {"decisions": [{"type": "approve"}]}}}
        done = await _wait(driver, job, approve, avoid=job.served_by[-1])
        assert "create_ticket" in json.dumps(done), job.tag


def _jobs() -> list[Job]:
    jobs, runs, index = [], 0, 0
    kinds = itertools.cycle(["wait", "stream", "ticket", "background", "stream", "wait", "ticket"])
    while runs < RUNS:
        kind = next(kinds)
        jobs.append(Job(index=index, user=("alice", "carol")[index % 2], kind=kind))
        runs += 2 if kind == "ticket" else 1
        index += 1
    return jobs


async def _until_running_on(db: psycopg.Connection, replica: str) -> None:
    """Wait until ``replica`` executes at least two runs, so that killing it leaves runs to take over."""
    for _ in range(1200):
        running = db.execute(
            "SELECT count(*) FROM mandate.runs WHERE status = 'running' AND executed_by[cardinality(executed_by)] = %s",
            (replica,),
        ).fetchone()
        if running and running[0] >= 2:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{replica} never had two runs in flight")


async def test_three_replicas_lose_no_run_double_no_effect_and_leak_nothing(
    doomed_replicas: Replicas, stack_settings: Settings, db: psycopg.Connection
) -> None:
    replicas = doomed_replicas
    tokens = {user: login(replicas.public_url, user) for user in TENANT_OF}
    driver = Driver(replicas, tokens)
    jobs = _jobs()
    slots = asyncio.Semaphore(CONCURRENCY)
    started = 0

    async def guarded(job: Job) -> None:
        nonlocal started
        async with slots:
            started += 1
            if started == len(jobs) // 3:
                await _until_running_on(db, f"r{KILLED}")
                replicas.kill(KILLED)
            await _do(driver, job)

    try:
        await asyncio.gather(*(guarded(job) for job in jobs))
    finally:
        await driver.close()
    assert replicas.processes[KILLED].poll() is not None, "the replica was killed mid-way"

    threads = [job.thread for job in jobs]
    rows = db.execute(
        "SELECT thread_id::text, run_id::text, status, executed_by FROM mandate.runs WHERE thread_id::text = ANY(%s)",
        (threads,),
    ).fetchall()
    by_thread: dict[str, list[tuple[str, str, list[str]]]] = {}
    for thread, run_id, status, executed_by in rows:
        by_thread.setdefault(thread, []).append((run_id, status, executed_by))

    # No run lost: every run the clients made exists and ended as its kind says.
    assert sum(len(j.run_ids) for j in jobs) >= RUNS
    for job in jobs:
        runs = {run_id: status for run_id, status, _ in by_thread[job.thread]}
        assert set(job.run_ids) == set(runs), job.tag
        expected = ["interrupted", "success"] if job.kind == "ticket" else ["success"]
        assert [runs[r] for r in job.run_ids] == expected, (job.tag, job.kind, runs)

    # A dead replica's runs continued elsewhere, and resumes ran away from where they paused.
    taken_over = [e for runs in by_thread.values() for _, _, e in runs if len(e) > 1]
    assert taken_over and all(e[0] == f"r{KILLED}" or len(set(e)) == 1 for e in taken_over)
    tickets = [j for j in jobs if j.kind == "ticket"]
    executors = {run_id: e for runs in by_thread.values() for run_id, _, e in runs}
    moved = [j for j in tickets if executors[j.run_ids[0]][-1] != executors[j.run_ids[1]][-1]]
    assert moved, "some consents were resumed by another replica than the one that paused them"

    # No effect twice: one ticket per approved thread; one answer per question.
    effects = dict(
        db.execute(
            "SELECT split_part(idempotency_key, ':', 1), count(*) FROM mandate.demo_effects "
            "WHERE api = 'tickets' AND split_part(idempotency_key, ':', 1) = ANY(%s) GROUP BY 1",
            ([j.thread for j in tickets],),
        ).fetchall()
    )
    assert effects == {j.thread: 1 for j in tickets}
    for job in jobs:
        if job.kind != "ticket":
            state = json.loads(job.seen[-1]) if job.kind != "stream" else None
            if state is not None:
                kinds = [m["type"] for m in state["messages"]]
                assert kinds.count("human") == 1 and kinds.count("ai") == 1, (job.tag, kinds)

    # Streams: every event once and in order, though a replica died under some of them.
    for job in (j for j in jobs if j.kind == "stream"):
        ids = [i for i in job.stream_ids if i]
        assert ids == list(range(1, len(ids) + 1)), (job.tag, ids)

    # No event to the wrong user, no data across tenants.
    tags = {job.tag for job in jobs}
    for job in jobs:
        text = "\n".join(job.seen)
        assert {t for t in tags if t in text} == {job.tag}, job.tag
        assert not any(marker in text for marker in OTHER_TENANT_MARKERS[job.user]), job.tag

    # Every tenant's audit chain verifies.
    env = {**os.environ, "MANDATE_ENV": "test", "MANDATE_DATA_DIR": str(stack_settings.data_dir),
           "MANDATE_DATABASE_URL": stack_settings.database_url}
    verified = subprocess.run(
        [sys.executable, "-m", "mandate.cli.main", "audit", "verify"], env=env, capture_output=True, text=True, timeout=300
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "acme: OK" in verified.stdout and "globex: OK" in verified.stdout
