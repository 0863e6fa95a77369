"""Runs pytest jobs through the forking launcher (``_zygote.py``), a few at a time, each bounded in time."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mandate.evidence.errors import EvidenceRunError

__all__ = ["Job", "JobResult", "Launcher"]

ZYGOTE = Path(__file__).with_name("_zygote.py")
READY_TIMEOUT_S = 600.0
"""How long the launcher may take to import the libraries it preloads (slow on a loaded machine)."""
POLL_S = 0.5


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """One pytest run."""

    id: str
    cwd: Path
    """The tree to test: ``import mandate`` resolves here."""
    args: tuple[str, ...]
    """pytest's arguments."""
    env: dict[str, str]
    """The whole environment of the run."""
    log: Path
    """Where pytest's output goes."""
    timeout: float
    """Seconds after which the run and everything it started are killed."""


@dataclass(frozen=True, kw_only=True, slots=True)
class JobResult:
    """What became of one pytest run."""

    id: str
    exit_code: int | None
    """pytest's exit code (0 all passed, 1 some failed, 2 interrupted or collection errors, 5 nothing
    collected, 99 the launcher's child failed); ``None`` when killed."""
    outcomes: dict[str, str] = field(default_factory=dict)
    """Outcome per test node id: passed, failed, error, skipped, xfailed, xpassed."""
    collected: tuple[str, ...] = ()
    """Node ids pytest collected."""
    errors: tuple[str, ...] = ()
    """Collection errors and the child's own failures."""
    mandate: str | None = None
    """Where ``import mandate`` resolved in the run."""
    seconds: float = 0.0
    timed_out: bool = False
    log: Path | None = None


@dataclass(kw_only=True, slots=True)
class _Running:
    job: Job
    started: float
    pid: int | None = None
    killed: bool = False


class Launcher:
    """The forking launcher as a context manager: start it once, then :meth:`run` batches of jobs."""

    def __init__(self, *, workdir: Path, python: str = sys.executable) -> None:
        self._workdir = workdir
        self._python = python
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._buffer = b""
        self._live: set[int] = set()
        """Process groups of runs started and not yet ended (killed if we stop early)."""
        self.forking = False
        """Whether runs are forked (fast) or spawned (the fallback)."""

    def __enter__(self) -> Launcher:
        self._stderr = (self._workdir / "launcher.log").open("wb")
        try:
            self._process = subprocess.Popen(  # noqa: S603 - this interpreter, our script
                [self._python, str(ZYGOTE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                cwd=self._workdir,
            )
        except OSError as exc:
            raise EvidenceRunError(f"cannot start the test launcher ({exc.strerror or exc})") from exc
        ready = self._message(deadline=time.monotonic() + READY_TIMEOUT_S)
        if ready is None or not ready.get("ready"):
            self.__exit__(None, None, None)
            raise EvidenceRunError(f"the test launcher did not start; see {self._workdir / 'launcher.log'}")
        self.forking = bool(ready.get("forking"))
        return self

    def __exit__(self, *exc: object) -> None:
        for pid in self._live:  # only after an error or an interrupt: stop the runs we started
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._live.clear()
        process = self._process
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
        self._process = None

    def run(
        self,
        jobs: Sequence[Job],
        *,
        parallel: int = 1,
        on_start: Callable[[Job], None] | None = None,
        on_done: Callable[[Job, JobResult], None] | None = None,
    ) -> dict[str, JobResult]:
        """Run ``jobs``, at most ``parallel`` at once; returns their results by id.

        Args:
            jobs: The runs, started in order.
            parallel: How many run at the same time.
            on_start: Called before a job is handed to the launcher (to prepare what it needs).
            on_done: Called when a job has ended, with its result.

        Raises:
            EvidenceRunError: The launcher died.
        """
        queue = list(jobs)
        running: dict[str, _Running] = {}
        results: dict[str, JobResult] = {}
        while queue or running:
            while queue and len(running) < max(parallel, 1):
                job = queue.pop(0)
                if on_start is not None:
                    on_start(job)
                job.log.parent.mkdir(parents=True, exist_ok=True)
                self._send(job)
                running[job.id] = _Running(job=job, started=time.monotonic())
            message = self._message(deadline=time.monotonic() + POLL_S)
            if message is not None and message.get("id") in running:
                entry = running[message["id"]]
                if "pid" in message:
                    entry.pid = int(message["pid"])
                    self._live.add(entry.pid)
                elif "returncode" in message:
                    del running[entry.job.id]
                    self._live.discard(entry.pid or -1)
                    result = self._result(entry, time.monotonic())
                    results[entry.job.id] = result
                    if on_done is not None:
                        on_done(entry.job, result)
            for entry in running.values():
                if not entry.killed and entry.pid is not None and time.monotonic() - entry.started > entry.job.timeout:
                    entry.killed = True
                    try:
                        os.killpg(entry.pid, signal.SIGKILL)  # the run's own process group, started by us
                    except ProcessLookupError:
                        pass
        return results

    def _send(self, job: Job) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        payload = {
            "id": job.id, "cwd": str(job.cwd), "args": list(job.args), "env": job.env, "log": str(job.log),
            "result": str(self._result_path(job)),
        }
        try:
            process.stdin.write((json.dumps(payload) + "\n").encode())
            process.stdin.flush()
        except OSError as exc:
            raise EvidenceRunError(f"the test launcher stopped; see {self._workdir / 'launcher.log'}") from exc

    def _result_path(self, job: Job) -> Path:
        return job.log.with_suffix(".result.json")

    def _result(self, entry: _Running, now: float) -> JobResult:
        job = entry.job
        try:
            data: dict[str, Any] = json.loads(self._result_path(job).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        return JobResult(
            id=job.id,
            exit_code=None if entry.killed else data.get("exit_code"),
            outcomes=dict(data.get("outcomes") or {}),
            collected=tuple(data.get("collected") or ()),
            errors=tuple(data.get("errors") or ()),
            mandate=data.get("mandate"),
            seconds=round(now - entry.started, 1),
            timed_out=entry.killed,
            log=job.log,
        )

    def _message(self, *, deadline: float) -> dict[str, Any] | None:
        """The launcher's next message, or ``None`` if none came before ``deadline``.

        Raises:
            EvidenceRunError: The launcher exited.
        """
        process = self._process
        assert process is not None and process.stdout is not None
        fd = process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if select.select([fd], [], [], remaining)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise EvidenceRunError(f"the test launcher exited; see {self._workdir / 'launcher.log'}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line) if line.strip() else None
