"""The embedded Jaeger: loopback only, stops for sure, started by the dev stack when MANDATE_TRACES=jaeger."""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest

from mandate.devstack.jaeger import EmbeddedJaeger, ensure_jaeger_binary
from mandate.devstack.stack import DevStack
from mandate.runtime.settings import DevSettings, Settings
from tests.utils.servers import free_port


def _jaeger(run_dir: Path) -> EmbeddedJaeger:
    return EmbeddedJaeger(
        binary=ensure_jaeger_binary(Path(".tools")), otlp_port=free_port(), query_port=free_port(),
        query_grpc_port=free_port(), health_port=free_port(), run_dir=run_dir,
    )


def test_embedded_jaeger_listens_on_loopback_only(jaeger: EmbeddedJaeger) -> None:
    assert jaeger.pid is not None
    listening = [c.laddr for c in psutil.Process(jaeger.pid).net_connections(kind="inet") if c.status == "LISTEN"]
    assert {address.ip for address in listening} == {"127.0.0.1"}
    assert len({address.port for address in listening}) == 4  # OTLP/HTTP, query HTTP and gRPC, health: no more
    assert jaeger.start() == jaeger.query_url  # idempotent while running


def test_embedded_jaeger_stop_ends_process(tmp_path: Path) -> None:
    server = _jaeger(tmp_path)
    server.start()
    pid = server.pid
    assert pid is not None
    server.stop()
    server.stop()  # a second stop is a no-op
    assert server.pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.query_url}/api/services", timeout=2)
    log = (tmp_path / "jaeger.log").read_text()
    assert "Shutdown complete" in log
    assert ":4317" not in log, "Jaeger tried to send its own traces to a default OTLP endpoint"


def test_ensure_jaeger_binary_without_go_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="`go` was not found"):
        ensure_jaeger_binary(tmp_path / "tools")


def test_dev_stack_with_traces_jaeger_starts_it_and_links_the_timeline_to_it(
    stack_settings: Settings, tmp_path: Path
) -> None:
    settings = DevSettings(
        env="test", data_dir=tmp_path, tools_dir=Path(".tools").absolute(), database_url=stack_settings.database_url,
        fga_api_url=stack_settings.fga_api_url, traces="jaeger", jaeger_port=free_port(), jaeger_otlp_port=free_port(),
    )
    stack = DevStack(settings)
    try:
        resolved = stack.start()
        query = f"http://127.0.0.1:{settings.jaeger_port}"
        assert resolved.trace_link == f"{query}/api/traces/{{trace_id}}"
        assert stack.otlp_traces_endpoint == f"http://127.0.0.1:{settings.jaeger_otlp_port}/v1/traces"
        assert httpx.get(f"{query}/api/services", timeout=5).status_code == 200
    finally:
        stack.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{settings.jaeger_port}/api/services", timeout=2)
