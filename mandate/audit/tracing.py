"""Tracer setup: one provider, its exporters chosen by the standard ``OTEL_*`` variables.

- ``OTEL_TRACES_EXPORTER``: comma-separated ``otlp``, ``console`` or ``none``. Unset, traces go
  over OTLP only if an OTLP endpoint is set, else nowhere (dev without a collector stays quiet).
  ``OTEL_SDK_DISABLED=true`` turns every exporter off.
- ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is) or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (plus
  ``/v1/traces``; default ``http://localhost:4318``): the collector, OTLP over HTTP/protobuf.
- The SDK reads the rest itself: ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``,
  ``OTEL_TRACES_SAMPLER[_ARG]``, ``OTEL_EXPORTER_OTLP_HEADERS`` / ``_TIMEOUT`` / ``_COMPRESSION`` /
  ``_CERTIFICATE``, ``OTEL_BSP_*`` for the batch processor.

Tests pass their in-memory exporter to :func:`build_tracer_provider` directly.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from mandate.audit.errors import TracingConfigError

__all__ = ["TRACER_NAME", "build_tracer_provider", "tracer_provider_from_env"]

TRACER_NAME = "mandate"
SERVICE_NAME = "mandate"
_EXPORTERS = frozenset({"otlp", "console", "none"})
_OTLP_PROTOCOLS = frozenset({"http/protobuf"})
_DEFAULT_OTLP_ENDPOINT = "http://localhost:4318"


def build_tracer_provider(
    exporter: SpanExporter | None = None, *, console: bool = False, otlp_endpoint: str | None = None,
    service_name: str = SERVICE_NAME,
) -> TracerProvider:
    """A tracer provider for ``service_name``.

    Args:
        exporter: Receives every span as it ends (the in-memory exporter in tests).
        console: Also print spans to stdout.
        otlp_endpoint: Also send spans, batched, to this OTLP/HTTP traces URL.
        service_name: ``service.name`` of the resource.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
    if otlp_endpoint:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    return provider


def tracer_provider_from_env(environ: Mapping[str, str]) -> TracerProvider:
    """The provider the ``OTEL_*`` variables in ``environ`` describe (see the module docstring).

    Call ``shutdown()`` on it at exit so batched spans are flushed.

    Raises:
        TracingConfigError: An unknown exporter, or an OTLP protocol other than HTTP/protobuf.
    """
    traces_endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
    base_endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").rstrip("/")
    configured = environ.get("OTEL_TRACES_EXPORTER", "")
    names = {n.strip().lower() for n in configured.split(",") if n.strip()}
    if not names and (traces_endpoint or base_endpoint):
        names = {"otlp"}
    if unknown := names - _EXPORTERS:
        raise TracingConfigError(f"OTEL_TRACES_EXPORTER names unknown exporters: {', '.join(sorted(unknown))}.")
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        names = set()
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if "otlp" in names and protocol not in (None, *_OTLP_PROTOCOLS):
        raise TracingConfigError(f"OTLP protocol {protocol!r} is not available here; use http/protobuf.")
    endpoint = traces_endpoint or f"{base_endpoint or _DEFAULT_OTLP_ENDPOINT}/v1/traces"
    return build_tracer_provider(
        console="console" in names,
        otlp_endpoint=endpoint if "otlp" in names else None,
        service_name=environ.get("OTEL_SERVICE_NAME", SERVICE_NAME),
    )
