"""Tracer setup: one provider, exporter chosen by the caller (in-memory in tests)."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

__all__ = ["TRACER_NAME", "build_tracer_provider"]

TRACER_NAME = "mandate"


def build_tracer_provider(exporter: SpanExporter | None = None, *, console: bool = False) -> TracerProvider:
    """A tracer provider for service ``mandate`` exporting to ``exporter`` (and the console if asked)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "mandate"}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    return provider
