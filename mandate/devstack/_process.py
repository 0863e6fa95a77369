"""A server of the embedded stack as a child process: output to a log, probed until ready, stopped for sure.

OpenFGA, Keycloak and Jaeger run through :class:`ChildServer`, so they start, report failures
(with the tail of their log) and stop the same way. The child is asked to die with the process
that started it (Linux ``PR_SET_PDEATHSIG``), so a killed test run leaves no server behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

__all__ = ["LOOPBACK", "ChildServer", "die_with_parent", "free_port", "log_tail", "tail_lines"]

LOOPBACK = "127.0.0.1"
"""The only address the embedded servers listen on."""
LOG_TAIL_LINES = 40
"""Lines of a server's log quoted in an error."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this (child) process when the process that started it dies, however it dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def tail_lines(text: str, *, lines: int = LOG_TAIL_LINES, skip: Sequence[str] = ()) -> str:
    """The last ``lines`` lines of ``text``, without lines starting with one of ``skip`` (noise)."""
    kept = [line for line in text.strip().splitlines() if not line.startswith(tuple(skip))]
    return "\n".join(kept[-lines:])


def log_tail(path: Path, *, lines: int = LOG_TAIL_LINES, skip: Sequence[str] = ()) -> str:
    """The last ``lines`` lines of the log at ``path`` (see :func:`tail_lines`), or ``(no log)``."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return tail_lines(text, lines=lines, skip=skip)


class ChildServer:
    """One server process: its stdout and stderr appended to a log, stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self,
        *,
        name: str,
        log_path: Path,
        stop_timeout: float,
        own_group: bool = False,
        log_noise: Sequence[str] = (),
    ) -> None:
        """Prepare (but do not start) the process.

        Args:
            name: What errors call it (``OpenFGA``).
            log_path: File that receives its output (appended).
            stop_timeout: Seconds to wait after SIGTERM before SIGKILL.
            own_group: Start it in a process group of its own and SIGKILL the whole group if it
                does not stop (a launcher script and the server it runs).
            log_noise: Prefixes of log lines left out of the tail quoted in errors.
        """
        self._name = name
        self._log_path = Path(log_path).absolute()
        self._stop_timeout = stop_timeout
        self._own_group = own_group
        self._log_noise = tuple(log_noise)
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """The log file."""
        return self._log_path

    @property
    def pid(self) -> int | None:
        """Process id while it runs, else ``None``."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def log(self) -> IO[bytes]:
        """The log, opened for appending (for a preparatory command whose output belongs there too)."""
        if self._log_file is None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self._log_path.open("ab")
        return self._log_file

    def spawn(self, args: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> None:
        """Start the process (call :meth:`stop` first if one may have exited on its own)."""
        self._process = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=self.log(),
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=self._own_group,
            preexec_fn=die_with_parent,
        )

    def wait_ready(
        self,
        ready: Callable[[httpx.Client], bool],
        *,
        timeout: float,
        waiting_for: str,
        poll: float = 0.1,
        request_timeout: float = 2.0,
    ) -> None:
        """Poll ``ready`` until it answers ``True``; HTTP errors and unreadable answers count as not yet.

        Args:
            ready: Asks the server over the given client whether it is ready.
            timeout: Seconds to wait.
            waiting_for: What readiness means, for the error (``/healthz to report SERVING``).
            poll: Seconds between probes.
            request_timeout: Timeout of one probe.

        Raises:
            RuntimeError: The process exited, or was not ready in time; the message ends with its log.
        """
        assert self._process is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=request_timeout) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise RuntimeError(f"{self._name} exited with code {code}; log {self._log_path}:\n{self.tail()}")
                try:
                    if ready(client):
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self._name}: no {waiting_for} within {timeout:.0f} s; log {self._log_path}:\n{self.tail()}"
                    )
                time.sleep(poll)

    def stop(self) -> None:
        """Terminate the process, wait for it, kill it (or its group) if it does not exit; close the log. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                if self._own_group:
                    os.killpg(process.pid, signal.SIGKILL)  # its own group, not yet reaped
                else:
                    process.kill()
                process.wait()
        log_file, self._log_file = self._log_file, None
        if log_file is not None:
            log_file.close()

    def tail(self) -> str:
        """The end of the log (flushed first)."""
        if self._log_file is not None:
            self._log_file.flush()
        return log_tail(self._log_path, skip=self._log_noise)
