"""Tracer setup from the standard OTEL_* variables; OTLP is exercised against a loopback receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request, Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from mandate.audit import TracingConfigError, tracer_provider_from_env
from tests.utils.servers import serve_in_thread


@pytest.fixture()
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """An OTLP/HTTP traces receiver on loopback (stands in for the OpenTelemetry collector)."""
    received: list[ExportTraceServiceRequest] = []
    app = FastAPI()

    @app.post("/v1/traces")
    async def traces(request: Request) -> Response:
        received.append(ExportTraceServiceRequest.FromString(await request.body()))
        return Response(content=b"", media_type="application/x-protobuf")

    with serve_in_thread(app) as url:
        yield url, received


def test_otlp_endpoint_sends_spans_over_otlp_http(collector: tuple[str, list[ExportTraceServiceRequest]]) -> None:
    url, received = collector
    provider = tracer_provider_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_SERVICE_NAME": "mandate-test"})
    with provider.get_tracer("test").start_as_current_span("invoke_agent mandate") as span:
        span.set_attribute("gen_ai.operation.name", "invoke_agent")
    provider.shutdown()
    [request] = received
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    [exported] = resource_spans.scope_spans[0].spans
    assert (service, exported.name) == ("mandate-test", "invoke_agent mandate")


def test_console_exporter_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    provider = tracer_provider_from_env({"OTEL_TRACES_EXPORTER": "console"})
    with provider.get_tracer("test").start_as_current_span("node planner"):
        pass
    provider.shutdown()
    assert '"name": "node planner"' in capsys.readouterr().out


def test_no_variables_export_nowhere_and_sdk_disabled_wins(capsys: pytest.CaptureFixture[str]) -> None:
    quiet = ({}, {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"})
    for environ in quiet:
        provider = tracer_provider_from_env(environ)
        with provider.get_tracer("test").start_as_current_span("quiet"):
            pass
        provider.shutdown()
    assert "quiet" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "unknown exporters: zipkin"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "'grpc' is not available"),
    ],
)
def test_unsupported_configuration_fails_at_startup(environ: dict[str, str], message: str) -> None:
    with pytest.raises(TracingConfigError, match=message):
        tracer_provider_from_env(environ)
