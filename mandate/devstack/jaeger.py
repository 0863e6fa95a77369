"""The embedded Jaeger for dev and tests: the real trace backend, run as a subprocess on loopback.

Jaeger v2 is an OpenTelemetry Collector distribution. :func:`ensure_jaeger_binary` builds the pinned
release once into ``<tools_dir>/bin/jaeger`` from the Go module proxy (a throw-away tool module,
``go get -tool``, ``go build``: its ``go.mod`` has replace directives, so ``go install …@version`` is
refused). The Go build carries no UI assets; the HTTP query API (``/api/services``, ``/api/traces``)
is complete. :class:`EmbeddedJaeger` runs it with a configuration of its own: in-memory storage,
the OTLP/HTTP receiver and the query API on 127.0.0.1 only, no collector metrics port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from mandate.devstack._process import LOOPBACK, ChildServer, tail_lines

__all__ = ["JAEGER_VERSION", "EmbeddedJaeger", "ensure_jaeger_binary"]

JAEGER_VERSION = "v1.76.0"
"""The pinned Jaeger release (its Go module version; the binary is Jaeger v2)."""
JAEGER_PACKAGE = "github.com/jaegertracing/jaeger/cmd/jaeger"
BUILD_TIMEOUT = 3600.0
"""Seconds one ``go`` step may take: a cold build is about 7 minutes on two idle cores, and took over
30 on two cores shared with other builds; with Go's build cache warm it is a link of a few minutes."""
DEFAULT_START_TIMEOUT = 60.0
DEFAULT_STOP_TIMEOUT = 10.0
MAX_TRACES = 100_000
"""Traces the in-memory store keeps before dropping the oldest."""
BUILD_NOTICE = "Building Jaeger {version} from the Go module proxy into {binary} (the first build takes minutes)…"


def ensure_jaeger_binary(tools_dir: Path) -> Path:
    """Return ``<tools_dir>/bin/jaeger``, building the pinned release if it is missing.

    Not looked up on ``PATH``: a ``jaeger`` found there may be a v1 all-in-one that does not read
    the v2 configuration :class:`EmbeddedJaeger` writes.

    Raises:
        RuntimeError: ``go`` is not installed or a build step fails; the message names the step.
    """
    bin_dir = Path(tools_dir).expanduser().resolve() / "bin"
    binary = bin_dir / "jaeger"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(f"Jaeger is not installed and `go` was not found on PATH; install Go to build {binary}")
    print(BUILD_NOTICE.format(version=JAEGER_VERSION, binary=binary), file=sys.stderr, flush=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    # The module and the unfinished binary are this build's own, so two builds at once cannot mix;
    # the rename is atomic, so a half-written binary is never taken for a built one.
    with tempfile.TemporaryDirectory(prefix="mandate-jaeger-build-") as module, \
            tempfile.TemporaryDirectory(prefix=".jaeger-", dir=bin_dir) as unfinished:
        partial = Path(unfinished) / "jaeger"
        for step in (
            ["mod", "init", "mandate.local/jaeger-tool"],
            ["get", "-tool", f"{JAEGER_PACKAGE}@{JAEGER_VERSION}"],
            ["build", "-o", str(partial), JAEGER_PACKAGE],
        ):
            _go(go, step, cwd=Path(module))
        partial.replace(binary)
    return binary


def _go(go: str, args: list[str], *, cwd: Path) -> None:
    shown = f"go {' '.join(args)}"
    try:
        result = subprocess.run(
            [go, *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=BUILD_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"building Jaeger {JAEGER_VERSION}: `{shown}` timed out") from exc
    if result.returncode != 0:
        tail = tail_lines(result.stdout + result.stderr)
        raise RuntimeError(f"building Jaeger {JAEGER_VERSION}: `{shown}` failed (exit {result.returncode})\n{tail}")


class EmbeddedJaeger:
    """Jaeger as a child process: OTLP/HTTP in, HTTP query API out, traces in memory, loopback only."""

    def __init__(
        self, *, binary: Path, otlp_port: int, query_port: int, query_grpc_port: int, health_port: int, run_dir: Path
    ) -> None:
        """Prepare (but do not start) the server.

        Args:
            binary: The ``jaeger`` executable (see :func:`ensure_jaeger_binary`).
            otlp_port: Loopback port of the OTLP/HTTP receiver (``/v1/traces``).
            query_port: Loopback port of the HTTP query API (and the UI, where assets are built in).
            query_grpc_port: Loopback port of the gRPC query API (always served; unused by Mandate).
            health_port: Loopback port of the health check (``/status``).
            run_dir: Receives ``jaeger.yaml`` (the configuration) and ``jaeger.log``.
        """
        self._binary = Path(binary).absolute()
        self._otlp_port = otlp_port
        self._query_port = query_port
        self._query_grpc_port = query_grpc_port
        self._health_port = health_port
        self._run_dir = Path(run_dir).absolute()
        self._server = ChildServer(name="Jaeger", log_path=self._run_dir / "jaeger.log", stop_timeout=DEFAULT_STOP_TIMEOUT)

    @property
    def otlp_traces_endpoint(self) -> str:
        """Where to send spans: the OTLP/HTTP traces URL (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)."""
        return f"http://{LOOPBACK}:{self._otlp_port}/v1/traces"

    @property
    def query_url(self) -> str:
        """Base URL of the HTTP query API (``/api/traces/<trace id>``) and of the UI."""
        return f"http://{LOOPBACK}:{self._query_port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or ``None`` when it is not running."""
        return self._server.pid

    def start(self, *, timeout: float = DEFAULT_START_TIMEOUT) -> str:
        """Write the configuration, start the server and wait until it is healthy and queryable. Idempotent.

        Returns:
            The query API's base URL.

        Raises:
            RuntimeError: The server exited or was not ready in time; the message ends with its log.
        """
        if self.pid is not None:
            return self.query_url
        self.stop()
        self._run_dir.mkdir(parents=True, exist_ok=True)
        config = self._run_dir / "jaeger.yaml"
        config.write_text(json.dumps(self._config(), indent=2))  # JSON is YAML
        try:
            self._server.spawn([str(self._binary), "--config", str(config)], env=_child_env(), cwd=self._run_dir)
            self._server.wait_ready(self._ready, timeout=timeout, waiting_for="healthy status and query API")
        except BaseException:
            self.stop()
            raise
        return self.query_url

    def stop(self) -> None:
        """Terminate the server (its traces are gone with it). Idempotent."""
        self._server.stop()

    def _ready(self, client: httpx.Client) -> bool:
        status = client.get(f"http://{LOOPBACK}:{self._health_port}/status")
        if status.status_code != 200 or status.json().get("healthy") is not True:
            return False
        return client.get(f"{self.query_url}/api/services").status_code == 200

    def _config(self) -> dict[str, Any]:
        """Jaeger's all-in-one configuration, reduced to what Mandate uses, every endpoint on loopback."""
        storage = "memstore"
        return {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["batch"],
                        "exporters": ["jaeger_storage_exporter"],
                    }
                },
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
            },
            "extensions": {
                "jaeger_storage": {"backends": {storage: {"memory": {"max_traces": MAX_TRACES}}}},
                "jaeger_query": {
                    "storage": {"traces": storage},
                    "enable_tracing": False,  # else it traces itself to localhost:4317 and waits 10 s at exit
                    "http": {"endpoint": f"{LOOPBACK}:{self._query_port}"},
                    "grpc": {"endpoint": f"{LOOPBACK}:{self._query_grpc_port}"},
                },
                "healthcheckv2": {"use_v2": True, "http": {"endpoint": f"{LOOPBACK}:{self._health_port}"}},
            },
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:{self._otlp_port}"}}}},
            "processors": {"batch": {"timeout": "200ms"}},
            "exporters": {"jaeger_storage_exporter": {"trace_storage": storage}},
        }


def _child_env() -> dict[str, str]:
    """Our environment minus ``OTEL_*`` and ``JAEGER_*``: only the configuration file configures it."""
    return {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "JAEGER_"))}
