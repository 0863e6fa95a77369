"""The embedded OpenFGA server for dev and tests: the real binary, run as a subprocess on loopback.

The binary is built once with ``go install`` into ``<tools_dir>/bin`` (:func:`ensure_openfga_binary`);
:class:`EmbeddedOpenFGA` migrates its Postgres datastore, runs it with only the HTTP and gRPC APIs
open on 127.0.0.1, and waits until ``/healthz`` reports ``SERVING``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

__all__ = ["OPENFGA_VERSION", "EmbeddedOpenFGA", "ensure_openfga_binary"]

OPENFGA_VERSION = "v1.22.1"
"""The pinned OpenFGA release built by :func:`ensure_openfga_binary`."""

OPENFGA_MODULE = "github.com/openfga/openfga/cmd/openfga"
LOOPBACK = "127.0.0.1"
DEFAULT_START_TIMEOUT = 60.0
"""Seconds :meth:`EmbeddedOpenFGA.start` waits for ``/healthz`` to answer ``SERVING``."""
DEFAULT_MIGRATE_TIMEOUT = 120.0
DEFAULT_STOP_TIMEOUT = 15.0
"""Seconds to wait after SIGTERM before SIGKILL (OpenFGA's own shutdown timeout is 10 s)."""
LOG_TAIL_LINES = 40

BUILD_NOTICE = "Building OpenFGA {version} with `{command}` (the first build takes a few minutes)…"


def ensure_openfga_binary(tools_dir: Path) -> Path:
    """Return the OpenFGA server binary, building it with ``go install`` if it is missing.

    Looks for ``<tools_dir>/bin/openfga``, then for ``openfga`` on ``PATH``; if neither exists, runs
    ``go install github.com/openfga/openfga/cmd/openfga@<OPENFGA_VERSION>`` with ``GOBIN=<tools_dir>/bin``.

    Args:
        tools_dir: Directory whose ``bin/`` holds the binary.

    Returns:
        Path of the binary.

    Raises:
        RuntimeError: If ``go`` is not installed or the build fails; the message names the command.
    """
    bin_dir = Path(tools_dir).expanduser().resolve() / "bin"
    binary = bin_dir / "openfga"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    on_path = shutil.which("openfga")
    if on_path is not None:
        return Path(on_path)

    command = ["go", "install", f"{OPENFGA_MODULE}@{OPENFGA_VERSION}"]
    shown = f"GOBIN={bin_dir} {' '.join(command)}"
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(f"OpenFGA is not installed and `go` was not found on PATH; install Go and run: {shown}")
    print(BUILD_NOTICE.format(version=OPENFGA_VERSION, command=shown), file=sys.stderr, flush=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [go, *command[1:]],
        env={**os.environ, "GOBIN": str(bin_dir)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not binary.is_file():
        tail = _tail(result.stdout + result.stderr)
        raise RuntimeError(f"building OpenFGA failed (exit {result.returncode}): {shown}\n{tail}")
    return binary


class EmbeddedOpenFGA:
    """The OpenFGA server as a child process, with a Postgres datastore, on loopback only."""

    def __init__(self, *, binary: Path, datastore_uri: str, http_port: int, grpc_port: int, log_path: Path) -> None:
        """Prepare (but do not start) the server.

        Args:
            binary: The ``openfga`` executable (see :func:`ensure_openfga_binary`).
            datastore_uri: Postgres URI of OpenFGA's database; a libpq URI with ``?host=<socket dir>`` works.
            http_port: Loopback port of the HTTP API.
            grpc_port: Loopback port of the gRPC API (the HTTP gateway talks to it).
            log_path: File that receives the server's stdout and stderr (appended).
        """
        # Absolute, because the server runs with the log's directory as its working directory.
        self._binary = Path(binary).absolute()
        self._datastore_uri = datastore_uri
        self._http_port = http_port
        self._grpc_port = grpc_port
        self._log_path = Path(log_path).absolute()
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def api_url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://{LOOPBACK}:{self._http_port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or ``None`` when it is not running."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def start(self, *, timeout: float = DEFAULT_START_TIMEOUT) -> str:
        """Migrate the datastore, start the server and wait until it is healthy. Idempotent.

        Args:
            timeout: Seconds to wait for ``/healthz`` to answer ``SERVING``.

        Returns:
            The HTTP API URL, ``http://127.0.0.1:<http_port>``.

        Raises:
            RuntimeError: If the migration fails or the server does not become healthy in time; the
                message ends with the tail of the server log.
        """
        if self.pid is not None:
            return self.api_url
        self.stop()  # reap a server that exited on its own and close its log
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self._log_path.open("ab")
        try:
            self._migrate()
            self._process = subprocess.Popen(
                self._run_args(),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                cwd=self._log_path.parent,
                preexec_fn=_die_with_parent,
            )
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self.api_url

    def stop(self) -> None:
        """Terminate the server, wait for it, and kill it if it does not exit. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=DEFAULT_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log_file, self._log_file = self._log_file, None
        if log_file is not None:
            log_file.close()

    def _datastore_args(self) -> list[str]:
        return ["--datastore-engine", "postgres", "--datastore-uri", self._datastore_uri]

    def _run_args(self) -> list[str]:
        return [
            str(self._binary),
            "run",
            *self._datastore_args(),
            "--http-addr",
            f"{LOOPBACK}:{self._http_port}",
            "--grpc-addr",
            f"{LOOPBACK}:{self._grpc_port}",
            "--playground-enabled=false",
            "--metrics-enabled=false",
            "--profiler-enabled=false",
            "--trace-enabled=false",
            "--log-format",
            "json",
        ]

    def _migrate(self) -> None:
        assert self._log_file is not None
        args = [str(self._binary), "migrate", *self._datastore_args(), "--log-format", "json"]
        try:
            result = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                cwd=self._log_path.parent,
                timeout=DEFAULT_MIGRATE_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"`openfga migrate` timed out; log {self._log_path}:\n{self._log_tail()}") from exc
        if result.returncode != 0:
            raise RuntimeError(
                f"`openfga migrate` failed (exit {result.returncode}); log {self._log_path}:\n{self._log_tail()}"
            )

    def _wait_healthy(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise RuntimeError(f"OpenFGA exited with code {code}; log {self._log_path}:\n{self._log_tail()}")
                try:
                    response = client.get(f"{self.api_url}/healthz")
                    if response.status_code == 200 and response.json().get("status") == "SERVING":
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"OpenFGA did not report SERVING within {timeout:.0f} s; log {self._log_path}:\n"
                        f"{self._log_tail()}"
                    )
                time.sleep(0.1)

    def _log_tail(self) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        try:
            return _tail(self._log_path.read_text(errors="replace"))
        except OSError:
            return "(no log)"


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM the server when the process that started it dies, however it dies."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _child_env() -> dict[str, str]:
    """The environment for OpenFGA: ours minus ``OPENFGA_*``, so only the flags configure it."""
    return {key: value for key, value in os.environ.items() if not key.startswith("OPENFGA_")}


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
