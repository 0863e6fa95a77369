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
from pathlib import Path

import httpx

from mandate.devstack._process import LOOPBACK, ChildServer, tail_lines

__all__ = ["OPENFGA_VERSION", "EmbeddedOpenFGA", "ensure_openfga_binary"]

OPENFGA_VERSION = "v1.22.1"
"""The pinned OpenFGA release built by :func:`ensure_openfga_binary`."""

OPENFGA_MODULE = "github.com/openfga/openfga/cmd/openfga"
DEFAULT_START_TIMEOUT = 60.0
"""Seconds :meth:`EmbeddedOpenFGA.start` waits for ``/healthz`` to answer ``SERVING``."""
DEFAULT_MIGRATE_TIMEOUT = 120.0
DEFAULT_STOP_TIMEOUT = 15.0
"""Seconds to wait after SIGTERM before SIGKILL (OpenFGA's own shutdown timeout is 10 s)."""

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
        tail = tail_lines(result.stdout + result.stderr)
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
        self._server = ChildServer(name="OpenFGA", log_path=log_path, stop_timeout=DEFAULT_STOP_TIMEOUT)

    @property
    def api_url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://{LOOPBACK}:{self._http_port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or ``None`` when it is not running."""
        return self._server.pid

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
        try:
            self._migrate()
            self._server.spawn(self._run_args(), env=_child_env(), cwd=self._server.log_path.parent)
            self._server.wait_ready(self._serving, timeout=timeout, waiting_for="SERVING from /healthz")
        except BaseException:
            self.stop()
            raise
        return self.api_url

    def stop(self) -> None:
        """Terminate the server, wait for it, and kill it if it does not exit. Idempotent."""
        self._server.stop()

    def _serving(self, client: httpx.Client) -> bool:
        response = client.get(f"{self.api_url}/healthz")
        return response.status_code == 200 and response.json().get("status") == "SERVING"

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
        args = [str(self._binary), "migrate", *self._datastore_args(), "--log-format", "json"]
        log = self._server.log_path
        try:
            result = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=self._server.log(),
                stderr=subprocess.STDOUT,
                env=_child_env(),
                cwd=log.parent,
                timeout=DEFAULT_MIGRATE_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"`openfga migrate` timed out; log {log}:\n{self._server.tail()}") from exc
        if result.returncode != 0:
            raise RuntimeError(
                f"`openfga migrate` failed (exit {result.returncode}); log {log}:\n{self._server.tail()}"
            )


def _child_env() -> dict[str, str]:
    """The environment for OpenFGA: ours minus ``OPENFGA_*``, so only the flags configure it."""
    return {key: value for key, value in os.environ.items() if not key.startswith("OPENFGA_")}
